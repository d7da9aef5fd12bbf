# shellcheck shell=bash
# Sourced by scripts/run and scripts/test: make sure ./.venv exists and holds xferd.
#
#   ensure_venv ""       installs xferd (editable)
#   ensure_venv test     installs xferd with its test tools
#
# pip runs again only when pyproject.toml changed since the last install (the package is
# installed editable, so source changes need no reinstall). Set PYTHON to use another interpreter.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

_say() { printf 'xferd: %s\n' "$*" >&2; }

_check_python() {
    local python="$1"
    if ! command -v "$python" >/dev/null 2>&1; then
        _say "$python not found: install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3 python3-venv)"
        return 1
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        _say "xferd needs Python 3.11 or newer; $python is $("$python" -V 2>&1)"
        return 1
    fi
}

_make_venv() {
    local python="${PYTHON:-python3}"
    _check_python "$python" || return 1
    _say "creating $VENV"
    if "$python" -m venv "$VENV" >/dev/null 2>&1; then
        return 0
    fi
    # Debian and Ubuntu ship venv's pip bootstrap separately; a failed attempt leaves a half-made venv.
    rm -rf "$VENV"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        _say "python3 -m venv failed; installing python3-venv with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null &&
            "$python" -m venv "$VENV" && return 0
        rm -rf "$VENV"
    fi
    _say "cannot create a virtual environment with $python."
    _say "On Debian or Ubuntu install the venv module first:  sudo apt-get install python3-venv"
    return 1
}

ensure_venv() {
    local extra="$1" spec="$ROOT" stamp
    [ -n "$extra" ] && spec="${ROOT}[${extra}]"
    stamp="$VENV/.xferd-installed${extra:+-$extra}"
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        _make_venv || return 1
    fi
    if [ -f "$stamp" ] && cmp -s "$stamp" "$ROOT/pyproject.toml"; then
        return 0
    fi
    _say "installing xferd${extra:+[$extra]} into .venv (pip install -e)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" || {
        _say "pip install failed (it needs network access to the package index)"
        return 1
    }
    cp "$ROOT/pyproject.toml" "$stamp"
}
