"""Crash safety: a daemon killed mid-upload never leaves a partial file, and leaks no blob."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from pathlib import Path

import asyncssh

from tests.support import PASSWORD, Daemon

N = 20


async def _connect(daemon: Daemon) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", daemon.port, username="alice", password=PASSWORD,
                                  known_hosts=None, client_keys=None)


def _stored_blobs(daemon: Daemon) -> set[str]:
    found = set()
    for path in daemon.blob_dir.rglob("*"):
        if path.is_file():
            found.add(path.name)
    return found


def _referenced_blobs(daemon: Daemon) -> tuple[set[str], dict[str, str]]:
    with sqlite3.connect(daemon.data_dir / "metadata.db") as db:
        referenced = {r[0] for r in db.execute("SELECT blob_id FROM inodes WHERE blob_id IS NOT NULL")}
        states = dict(db.execute("SELECT id, state FROM blobs").fetchall())
    return referenced, states


class TestKilledMidUpload:
    async def test_files_are_old_or_absent_and_no_blob_leaks(self, tmp_path: Path) -> None:
        """SIGKILL during 20 uploads: each file keeps its previous content in full (or stays absent),
        and after restart the collector leaves exactly the referenced blobs on disk."""
        daemon = Daemon(tmp_path, gc={"grace": 0.0, "interval": 3600.0})
        daemon.start()
        daemon.add_user("alice")
        old = {f"f{i}": os.urandom(50_000 + i) for i in range(0, N, 2)}  # half the files exist before
        async with await _connect(daemon) as conn, conn.start_sftp_client() as sftp:
            for name, data in old.items():
                async with sftp.open(name, "wb") as f:
                    await f.write(data)
            files = [await sftp.open(f"f{i}", "wb") for i in range(N)]
            new = os.urandom(4 * 1024 * 1024)
            for f in files:
                await f.write(new[:3 * 1024 * 1024], 0)  # written, never closed
            await asyncio.sleep(0.5)
            assert any(p.is_file() for p in (daemon.blob_dir / ".tmp").iterdir())
            daemon.kill()
            conn.abort()

        daemon.start()
        daemon.wait_event("gc.collected")
        async with await _connect(daemon) as conn, conn.start_sftp_client() as sftp:
            for i in range(N):
                name = f"f{i}"
                if name in old:
                    async with sftp.open(name, "rb") as f:
                        data = await f.read()
                    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(old[name]).hexdigest(), name
                else:
                    assert not await sftp.exists(name), name
        daemon.stop()

        referenced, states = _referenced_blobs(daemon)
        assert set(states.values()) == {"live"}
        assert set(states) == referenced
        assert _stored_blobs(daemon) == referenced


class TestKilledBetweenCommitAndPublish:
    async def test_committed_blob_left_in_tmp_is_moved_into_place(self, tmp_path: Path) -> None:
        """A blob is committed in the metadata store first and renamed into place right after; a
        crash in between leaves it in .tmp. The next start moves it into place (and deletes an
        unfinished upload beside it), and the file reads back whole."""
        daemon = Daemon(tmp_path, gc={"grace": 0.0, "interval": 3600.0})
        daemon.start()
        daemon.add_user("alice")
        data = os.urandom(300_000)
        async with await _connect(daemon) as conn, conn.start_sftp_client() as sftp, sftp.open("kept", "wb") as f:
            await f.write(data)
        daemon.stop()
        referenced, _ = _referenced_blobs(daemon)
        (blob_id,) = referenced
        placed = next(p for p in daemon.blob_dir.rglob(blob_id) if ".tmp" not in p.parts)
        placed.rename(daemon.blob_dir / ".tmp" / blob_id)  # as if the rename after the commit never ran
        (daemon.blob_dir / ".tmp" / ("0" * 32)).write_bytes(b"an upload that never committed")

        daemon.start()
        moved = daemon.wait_event("storage.published_committed_uploads")
        swept = daemon.wait_event("storage.swept_unfinished_uploads")
        async with await _connect(daemon) as conn, conn.start_sftp_client() as sftp, sftp.open("kept", "rb") as f:
            read_back = await f.read()
        daemon.stop()
        assert (1, 1, [], True, hashlib.sha256(data).hexdigest()) == (
            moved["files"], swept["files"], sorted((daemon.blob_dir / ".tmp").iterdir()), placed.is_file(),
            hashlib.sha256(read_back).hexdigest())
