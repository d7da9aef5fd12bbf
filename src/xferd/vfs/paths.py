"""Client paths: validated, normalized, and confined to a root.

A client path becomes a tuple of components below the user's root. ``..`` is resolved lexically
and stops at the root, so no spelling of a path (``../..``, ``/../x``, ``a/../../b``) names
anything outside it. Names are taken literally: ``%2e%2e`` is a file called ``%2e%2e``, not ``..``.
"""

from __future__ import annotations

import errno

from xferd.errors import InvalidPath

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255

Parts = tuple[str, ...]


def _utf8(text: str) -> bytes:
    """A name as stored: valid UTF-8, or EILSEQ (a lone surrogate is no character)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath("File name is not valid UTF-8", code=errno.EILSEQ) from None


def split(path: str | bytes) -> Parts:
    """Normalize a client path (absolute, or relative to the root) into components."""
    if isinstance(path, bytes):
        if len(path) > MAX_PATH_BYTES:
            raise InvalidPath("File name too long", code=errno.ENAMETOOLONG)
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPath("File name is not valid UTF-8", code=errno.EILSEQ) from None
    else:
        text = path
        if len(text) > MAX_PATH_BYTES or len(_utf8(text)) > MAX_PATH_BYTES:
            raise InvalidPath("File name too long", code=errno.ENAMETOOLONG)
    if "\x00" in text:
        raise InvalidPath("File name contains a NUL byte")
    parts: list[str] = []
    for name in text.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if parts:
                parts.pop()
            continue
        if len(_utf8(name)) > MAX_NAME_BYTES:
            raise InvalidPath("File name too long", code=errno.ENAMETOOLONG)
        parts.append(name)
    return tuple(parts)


def split_target(path: str | bytes) -> Parts:
    """Like :func:`split`, for a path that must name an entry (not the root)."""
    parts = split(path)
    if not parts:
        raise InvalidPath("The root cannot be used here", path="/")
    return parts


def to_client(parts: Parts) -> str:
    return "/" + "/".join(parts)


def tenant_path(home: str, parts: Parts) -> str:
    """The tenant-absolute path of ``parts`` below a user's home."""
    base = home.rstrip("/")
    return base + "/" + "/".join(parts) if parts else (base or "/")


def from_tenant(home: str, path: str) -> str | None:
    """The client path of a tenant-absolute ``path`` for a user with this home; None if outside it."""
    base = home.rstrip("/")
    if path == base or (not base and path == "/"):
        return "/"
    if path.startswith(base + "/"):
        return path[len(base):]
    return None


def normalize_home(home: str) -> str:
    return to_client(split(home))


def check_link_target(target: str | bytes) -> str:
    """A symbolic link's target is stored as given, but must be a valid path string."""
    if isinstance(target, bytes):
        try:
            target = target.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPath("Link target is not valid UTF-8", code=errno.EILSEQ) from None
    if not target:
        raise InvalidPath("Link target is empty")
    if "\x00" in target:
        raise InvalidPath("Link target contains a NUL byte")
    if len(_utf8(target)) > MAX_PATH_BYTES:
        raise InvalidPath("Link target too long", code=errno.ENAMETOOLONG)
    return target
