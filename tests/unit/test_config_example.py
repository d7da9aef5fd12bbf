"""config/xferd.example.toml stays complete and equal to the defaults; check-config judges files."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from xferd import config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "xferd.example.toml"


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XFERD_")}
    return subprocess.run([sys.executable, "-m", "xferd", "check-config", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, env=env)


class TestExampleConfig:
    def test_parses_to_the_defaults(self) -> None:
        """The example file, loaded without environment overrides, is exactly the default config."""
        expected = dataclasses.asdict(config.Config())
        actual = dataclasses.asdict(config.load(EXAMPLE, environ={}))
        assert expected == actual

    def test_lists_every_key(self) -> None:
        """Every field of every config section is set in the example file, not left to its default."""
        with open(EXAMPLE, "rb") as f:
            raw: dict[str, Any] = tomllib.load(f)
        expected = {"data_dir": None} | {
            name: sorted(f.name for f in dataclasses.fields(section)) for name, section in config.SECTIONS.items()}
        actual = {name: None if name == "data_dir" else sorted(raw[name]) for name in raw}
        assert expected == actual

    def test_comments_every_key(self) -> None:
        """Each key in the example file has a comment line right above it."""
        lines = EXAMPLE.read_text().splitlines()
        bare = [line for above, line in itertools.pairwise(lines)
                if line and line[0].isalpha() and "=" in line and not above.startswith("#")]
        assert bare == []


class TestCheckConfig:
    def test_good_file_passes(self) -> None:
        """check-config accepts the example file and exits 0."""
        result = _check_config(EXAMPLE)
        assert (0, f"{EXAMPLE}: ok") == (result.returncode, result.stdout.strip())

    def test_bad_keys_are_named(self, tmp_path: Path) -> None:
        """An unknown key and an ill-typed key make check-config fail, naming both."""
        path = tmp_path / "bad.toml"
        path.write_text('[sftp]\nport = "twenty-two"\n\n[gc]\ncolour = "green"\n')
        result = _check_config(path)
        assert result.returncode != 0
        assert "sftp.port" in result.stderr
        assert "gc.colour" in result.stderr

    def test_missing_file_fails(self, tmp_path: Path) -> None:
        """A config file that does not exist is an error, not the embedded default."""
        result = _check_config(tmp_path / "absent.toml")
        assert result.returncode != 0
        assert "absent.toml" in result.stderr
