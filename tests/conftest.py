from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import PASSWORD, Daemon, new_user, running_daemon


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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with the default settings and no users, shared by the tests of a module: each test
    works as a user of its own (``user``), so tests depend neither on each other nor on their order."""
    with running_daemon(tmp_path_factory.mktemp("server"), users=()) as daemon:
        yield daemon


@pytest.fixture
def user(server: Daemon, client_key: Path) -> str:
    """A new user of ``server`` for this test alone (password PASSWORD and the client key, an empty
    home); from here on the test sees only the daemon's new events (Daemon.mark)."""
    server.mark()
    return new_user(server, "user", PASSWORD, client_key.with_suffix(".pub"))
