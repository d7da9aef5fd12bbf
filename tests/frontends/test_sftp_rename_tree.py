"""Renaming a directory of 10,000 files is one metadata change: no blob is copied or touched."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncssh

from tests.support import PASSWORD, Daemon

FILES = 10_000


def _entries(daemon: Daemon) -> set[tuple[int, int, str, int]]:
    with sqlite3.connect(daemon.data_dir / "metadata.db") as db:
        return set(db.execute("SELECT tenant_id, parent, name, ino FROM entries"))


def _blob_files(daemon: Daemon) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in daemon.blob_dir.rglob("*") if p.is_file()}


class TestDirectoryRename:
    async def test_rename_of_10k_files_changes_one_entry(self, tmp_path: Path) -> None:
        """posix-rename of a directory holding 10,000 files rewrites one entry row, touches no blob,
        and every file is readable under the new name."""
        # Durability is not under test here: without fsync, creating 10,000 files is much quicker.
        alice = Daemon(tmp_path, storage={"fsync": False}, metadata={"sqlite_synchronous": "normal"}).start()
        alice.add_user("alice")
        async with asyncssh.connect("127.0.0.1", alice.port, username="alice", password=PASSWORD,
                                    known_hosts=None, client_keys=None) as conn, \
                conn.start_sftp_client() as sftp:
            await sftp.mkdir("big")
            limit = asyncio.Semaphore(64)

            async def put(i: int) -> None:
                async with limit, sftp.open(f"big/f{i:05d}", "wb") as f:
                    await f.write(b"%d" % i)

            await asyncio.gather(*(put(i) for i in range(FILES)))
            before_entries, before_blobs = _entries(alice), _blob_files(alice)
            assert len(before_blobs) == FILES

            await sftp.posix_rename("big", "renamed")

            after_entries, after_blobs = _entries(alice), _blob_files(alice)
            assert len(before_entries - after_entries) == 1
            assert len(after_entries - before_entries) == 1
            (new_row,) = after_entries - before_entries
            assert new_row[2] == "renamed"
            assert after_blobs == before_blobs
            assert len(await sftp.listdir("renamed")) == FILES + 2
            async with sftp.open("renamed/f09999", "rb") as f:
                assert await f.read() == b"9999"
            assert not await sftp.exists("big")
        alice.wait_event("fs.rename", path="big", target="renamed", outcome="ok")
        alice.stop()


