from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PASSWORD, Daemon


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ed25519 key pair for the clients; returns the private key's path."""
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A running daemon with user alice (password and key) and no one else."""
    d = Daemon(tmp_path)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None:
            d.stop()


@pytest.fixture
def alice(daemon: Daemon, client_key: Path) -> Daemon:
    daemon.add_user("alice", PASSWORD, client_key.with_suffix(".pub"))
    return daemon
