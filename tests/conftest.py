from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons with extra config sections (``make_daemon(ftp={"allow_active": True})``);
    each is stopped at the end of the test, also when it fails."""
    started: list[Daemon] = []

    def make(**sections: Any) -> Daemon:
        d = Daemon(tmp_path / f"daemon{len(started)}", **sections)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        if d.proc is not None:
            d.stop()
