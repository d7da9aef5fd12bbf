"""The few commands served over SSH exec: checksums, the way rclone asks for them.

rclone's sftp backend compares files by hash: it runs ``md5sum`` (or ``sha1sum``) with no argument
and an empty input to see whether the command exists, then ``md5sum <path>`` for each file. These
commands answer from the VirtualFS (the stored sums for MD5 and SHA-256, so no file is read again),
with the output format of the coreutils tools. Nothing else runs: there is no shell.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any

from xferd.vfs.filesystem import VirtualFS
from xferd.vfs.session import Session

ALGORITHMS = {"md5sum": "md5", "sha1sum": "sha1", "sha256sum": "sha256", "sha512sum": "sha512"}
MAX_STDIN = 64 * 1024 * 1024


def _words(command: str) -> list[str] | None:
    try:
        return shlex.split(command)
    except ValueError:
        return None


def is_checksum_command(command: str) -> bool:
    words = _words(command)
    return bool(words) and words is not None and words[0] in ALGORITHMS and not any(
        w.startswith("-") and w != "-" for w in words[1:])


async def run_checksum_command(vfs: VirtualFS, session: Session, command: str, stdin: Any, stdout: Any,
                               stderr: Any) -> int:
    """Run ``md5sum [PATH...]`` and the like; returns the exit status (1 if any path failed)."""
    words = _words(command) or []
    tool, paths = words[0], words[1:]
    algorithm = ALGORITHMS[tool]
    if not paths:
        # Standard input: rclone's probe sends none, and gets the sum of the empty input.
        hasher = hashlib.new(algorithm)
        size = 0
        while size <= MAX_STDIN:
            chunk = await stdin.read(65536)
            if not chunk:
                break
            size += len(chunk)
            hasher.update(chunk)
        stdout.write(f"{hasher.hexdigest()}  -\n".encode())
        return 0
    status = 0
    for path in paths:
        try:
            digest = await vfs.checksum(session, path, algorithm)
        except OSError as exc:
            stderr.write(f"{tool}: {path}: {exc.strerror or exc}\n".encode("utf-8", "replace"))
            status = 1
            continue
        stdout.write(f"{digest}  {path}\n".encode("utf-8", "replace"))
    return status
