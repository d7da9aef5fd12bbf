"""The daemon's life: start, refuse to start, stop gracefully, limits, systemd notification.

Tests of starting and stopping, and of settings, start daemons of their own; the command-line and
data-directory tests share one running daemon.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import pytest

from tests.support import PASSWORD, Daemon, exit_with_port_taken


async def _connect(daemon: Daemon, user: str = "alice") -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", daemon.port, username=user, password=PASSWORD,
                                  known_hosts=None, client_keys=None)


class TestStartup:
    def test_first_start_says_what_it_serves(self, daemon: Daemon) -> None:
        """The first start prints the address, the host key fingerprints and how to add a user."""
        text = daemon.wait_text("xferd user add NAME")
        assert f"sftp listening on 127.0.0.1:{daemon.port}" in text
        assert "host key ssh-ed25519 SHA256:" in text and "host key ssh-rsa SHA256:" in text
        assert "xferd user add NAME --password-stdin" in text

    def test_what_lives_as_long_as_the_daemon_is_out_of_the_collectors_sight(self, daemon: Daemon) -> None:
        """Once started, the daemon freezes what exists (modules, frontends) out of the cyclic
        garbage collector's full collections, and says how many objects that was."""
        started = daemon.wait_event("daemon.started")
        assert started["frozen"] > 10_000

    def test_port_in_use_is_a_clear_failure(self, tmp_path: Path) -> None:
        """When the port is taken, serve exits non-zero and says which port."""
        daemon = Daemon(tmp_path)
        assert exit_with_port_taken(daemon, daemon.port) != 0
        assert f"cannot listen for SFTP on port {daemon.port}" in daemon.log_path.read_text()

    def test_webdav_port_in_use_is_a_clear_failure(self, tmp_path: Path) -> None:
        """When the WebDAV port is taken, serve exits non-zero, names that port, and leaves its
        private socket directory behind nowhere (it is made under TMPDIR, here the test's own)."""
        (tmp_path / "daemon").mkdir()
        daemon = Daemon(tmp_path / "daemon")
        private_tmp = tmp_path / "tmp"
        private_tmp.mkdir()
        code = exit_with_port_taken(daemon, daemon.dav_port, env={"TMPDIR": str(private_tmp)})
        assert (True, True, []) == (
            code != 0, f"cannot listen for WebDAV on port {daemon.dav_port}" in daemon.log_path.read_text(),
            list(private_tmp.iterdir()))

    def test_bad_config_key_stops_serve(self, tmp_path: Path) -> None:
        """serve refuses a config with an unknown key and names it."""
        config = tmp_path / "bad.toml"
        config.write_text('[sftp]\nprot = 22\n')
        result = subprocess.run([sys.executable, "-m", "xferd", "serve", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "sftp.prot: unknown key" in result.stderr


class TestShutdown:
    async def test_sigterm_lets_an_upload_finish(self, alice: Daemon) -> None:
        """After SIGTERM no new connection is accepted, but an upload in progress completes."""
        data = os.urandom(2 * 1024 * 1024)
        async with await _connect(alice) as conn, conn.start_sftp_client() as sftp:
            f = await sftp.open("late.bin", "wb")
            await f.write(data[:1024 * 1024], 0)
            assert alice.proc is not None
            alice.proc.send_signal(signal.SIGTERM)
            alice.wait_event("daemon.stopping")
            with pytest.raises(OSError):
                await asyncio.wait_for(_connect(alice), 10)
            await f.write(data[1024 * 1024:], 1024 * 1024)
            await f.close()
        assert alice.proc.wait(30) == 0
        alice.proc = None
        alice.start()
        async with await _connect(alice) as conn, conn.start_sftp_client() as sftp, \
                sftp.open("late.bin", "rb") as f:
            assert await f.read() == data

    async def test_grace_period_ends_with_the_upload_aborted(self, tmp_path: Path) -> None:
        """An upload still open when the grace period ends is aborted, never committed."""
        daemon = Daemon(tmp_path, daemon={"shutdown_grace": 1.0}).start()
        daemon.add_user("alice")
        async with await _connect(daemon) as conn, conn.start_sftp_client() as sftp:
            f = await sftp.open("never.bin", "wb")
            await f.write(b"partial", 0)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
            assert await asyncio.get_running_loop().run_in_executor(None, daemon.proc.wait, 30) == 0
        daemon.proc = None
        daemon.wait_event("fs.upload", path="/never.bin", outcome="disconnected")
        daemon.start()
        async with await _connect(daemon) as conn, conn.start_sftp_client() as sftp:
            assert not await sftp.exists("never.bin")
        daemon.stop()

    def test_systemd_notification(self, tmp_path: Path) -> None:
        """Under systemd the daemon reports READY=1 once listening and STOPPING=1 on SIGTERM."""
        address = str(tmp_path / "notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(address)
            sock.settimeout(30)
            daemon = Daemon(tmp_path).start(env={"NOTIFY_SOCKET": address})
            assert sock.recv(100) == b"READY=1"
            daemon.stop()
            assert sock.recv(100) == b"STOPPING=1"


class TestLimits:
    async def test_sessions_per_user(self, tmp_path: Path) -> None:
        """A user's connection beyond sftp.max_sessions_per_user is refused; others still get in."""
        daemon = Daemon(tmp_path, sftp={"max_sessions_per_user": 2}).start()
        daemon.add_user("alice")
        daemon.add_user("bob")
        first, second = await _connect(daemon), await _connect(daemon)
        refused: list[asyncssh.SSHClientConnection] = []
        with pytest.raises((asyncssh.DisconnectError, asyncssh.ChannelOpenError)):
            refused.append(await _connect(daemon))
            async with refused[0].start_sftp_client() as sftp:
                await sftp.listdir(".")
        for conn in refused:
            conn.close()
            await conn.wait_closed()
        daemon.wait_event("sftp.too_many_sessions", user="alice")
        async with await _connect(daemon, "bob") as other, other.start_sftp_client() as sftp:
            await sftp.listdir(".")
        first.close()
        await first.wait_closed()
        await asyncio.sleep(0.2)
        async with await _connect(daemon) as again, again.start_sftp_client() as sftp:
            await sftp.listdir(".")
        second.close()
        await second.wait_closed()
        daemon.stop()

    async def test_idle_connections_are_closed(self, tmp_path: Path) -> None:
        """A connection that sends nothing for sftp.idle_timeout seconds is closed."""
        daemon = Daemon(tmp_path, sftp={"idle_timeout": 1.0}).start()
        daemon.add_user("alice")
        conn = await _connect(daemon)
        async with conn.start_sftp_client() as sftp:
            await sftp.listdir(".")
            started = time.monotonic()
            await asyncio.wait_for(conn.wait_closed(), 20)
        assert time.monotonic() - started >= 0.9
        daemon.wait_event("sftp.idle_timeout", user="alice")
        daemon.stop()


class TestCommandLine:
    def test_user_commands_as_a_real_process(self, server: Daemon, client_key: Path) -> None:
        """user add/list/key add/passwd/del work as separate processes while the daemon runs."""
        run = server.cli
        run("user", "add", "dave", "--password-stdin", "--perms", "list,download", "--quota-bytes", "1000",
            input="pw one\n", subprocess_=True)
        run("user", "key", "add", "dave", str(client_key.with_suffix(".pub")), subprocess_=True)
        listing = run("user", "list", subprocess_=True).stdout
        assert "default\tdave\t/dave\tenabled\tquota 1000 bytes/- files" in listing
        run("user", "passwd", "dave", "--password-stdin", input="pw two\n", subprocess_=True)
        run("user", "del", "dave", subprocess_=True)
        assert "dave" not in run("user", "list", subprocess_=True).stdout
        version = subprocess.run([sys.executable, "-m", "xferd", "version"], capture_output=True, text=True)
        assert version.stdout.startswith("xferd ")

    def test_user_add_refuses_bad_input(self, server: Daemon, tmp_path: Path) -> None:
        """Unknown permissions, a bad key file and a user with no credential are refused."""
        bad_key = tmp_path / "bad.pub"
        bad_key.write_text("not a key\n")
        assert "unknown permission 'fly'" in server.cli(
            "user", "add", "e", "--password-stdin", "--perms", "fly", input="x\n", check=False).stderr
        assert "not an OpenSSH public key" in server.cli(
            "user", "add", "e", "--key", str(bad_key), check=False).stderr
        assert "needs a password" in server.cli("user", "add", "e", check=False).stderr
        assert "already exists" in server.cli("user", "add", "e2", "--password-stdin", input="x\n").stderr + \
            server.cli("user", "add", "e2", "--password-stdin", input="x\n", check=False).stderr




class TestDataDirectory:
    def test_one_daemon_per_data_directory(self, server: Daemon, tmp_path: Path) -> None:
        """A second daemon on the same data directory refuses to start and says why."""
        second = Daemon(tmp_path / "second", data_dir=str(server.data_dir))
        second.start(wait=False)
        assert second.proc is not None
        assert second.proc.wait(30) != 0
        second.proc = None
        assert "another xferd daemon is using the data directory" in second.log_path.read_text()
