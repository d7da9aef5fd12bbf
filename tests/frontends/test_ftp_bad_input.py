"""Bad input over FTP: each gets the right reply code and an audit event, nothing is half-written,
and the daemon keeps serving.

Most tests share one daemon and work as a user of their own, in an empty home; tests that need
other settings use a daemon with those settings (shared where several tests need the same ones).
"""

from __future__ import annotations

import ftplib
import io
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import PASSWORD, Daemon, ftp_login, new_user, require_tool, running_daemon, write_config

OLD = b"the old content, which must survive" * 100


def _code(call: object, *args: object) -> str:
    with pytest.raises(ftplib.Error) as info:
        call(*args)  # type: ignore[operator]
    return str(info.value)[:3]


def _content(daemon: Daemon, user: str, name: str) -> bytes:
    client = ftp_login(daemon, user)
    out = io.BytesIO()
    client.retrbinary(f"RETR {name}", out.write)
    client.quit()
    return out.getvalue()


def _nothing_pending(daemon: Daemon) -> bool:
    """No upload left behind in the blob store's temporary area."""
    tmp = daemon.blob_dir / ".tmp"
    return not any(tmp.iterdir()) if tmp.exists() else True


def _wait_for_upload_bytes(daemon: Daemon, timeout: float = 30.0) -> None:
    """Wait until an upload in progress has bytes in the blob store's temporary area."""
    tmp = daemon.blob_dir / ".tmp"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tmp.exists() and any(p.stat().st_size > 0 for p in tmp.iterdir()):
            return
        time.sleep(0.05)
    raise AssertionError("no upload got under way")


@pytest.fixture
def old_file(server: Daemon, user: str) -> Iterator[ftplib.FTP]:
    """The user's file f with OLD in it, and a logged-in FTP session of the user."""
    client = ftp_login(server, user)
    client.storbinary("STOR f", io.BytesIO(OLD))
    yield client
    client.close()


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon that allows active mode and does not require data connections to resume the control
    connection's TLS session (each test that uses it checks one of the two)."""
    with running_daemon(tmp_path_factory.mktemp("ftp-relaxed"), (),
                        ftp={"allow_active": True, "require_tls_session_reuse": False}) as d:
        yield d


@pytest.fixture
def relaxed_user(relaxed: Daemon) -> str:
    """A new user of ``relaxed`` for this test; the test sees only the daemon's new events."""
    relaxed.mark()
    return new_user(relaxed)


class TestCommands:
    def test_unknown_command(self, server: Daemon, user: str) -> None:
        """An unknown command is 500 and audited; the session goes on."""
        client = ftp_login(server, user)
        assert "500" == _code(client.sendcmd, "FROBNICATE now")
        assert client.sendcmd("NOOP").startswith("200")
        server.wait_event("ftp.bad_request", outcome="EOPNOTSUPP", user=user)
        client.quit()

    def test_command_too_long(self, server: Daemon, user: str) -> None:
        """A 100 KB command line is 500 once, its tail is discarded, and the session goes on."""
        client = ftp_login(server, user)
        assert "500" == _code(client.sendcmd, "STOR " + "a" * 100_000)
        assert client.sendcmd("NOOP").startswith("200")
        assert [] == client.nlst()
        server.wait_event("ftp.bad_request", outcome="E2BIG", user=user)
        client.quit()

    def test_bad_command_before_login_is_audited_too(self, server: Daemon) -> None:
        """Before login the audit event carries the remote address."""
        server.mark()
        client = ftplib.FTP()
        client.connect("127.0.0.1", server.ftp_port, timeout=30)
        assert "500" == _code(client.sendcmd, "XYZZY")
        assert "530" == _code(client.sendcmd, "PWD")
        server.wait_event("ftp.bad_request", outcome="EOPNOTSUPP", remote="127.0.0.1")
        client.close()

    def test_wrong_password(self, server: Daemon, user: str) -> None:
        """A wrong password and an unknown user are 530 alike, and audited differently."""
        client = ftplib.FTP()
        client.connect("127.0.0.1", server.ftp_port, timeout=30)
        assert "530" == _code(client.login, user, "wrong")
        assert "530" == _code(client.login, "nobody", PASSWORD)
        server.wait_event("auth.login", user=user, outcome="bad_credentials", protocol="ftp")
        server.wait_event("auth.login", user="nobody", outcome="unknown_user")
        client.close()


class TestConfinement:
    def test_paths_cannot_leave_the_home(self, server: Daemon) -> None:
        """../ and absolute paths resolve inside the home: another user's file is not there."""
        alice_name, bob_name = new_user(server, "alice"), new_user(server, "bob")
        bob = ftp_login(server, bob_name)
        bob.storbinary("STOR secret", io.BytesIO(b"bob's"))
        bob.quit()
        alice = ftp_login(server, alice_name)
        for path in (f"../{bob_name}/secret", f"/../{bob_name}/secret", f"../../{bob_name}/secret",
                     f"/{bob_name}/secret"):
            assert "550" == _code(alice.retrbinary, f"RETR {path}", print)
        alice.cwd("../../..")
        assert "/" == alice.pwd()
        assert "550" == _code(alice.storbinary, f"STOR ../../{bob_name}/planted", io.BytesIO(b"x"))
        server.wait_event("fs.open_read", outcome="ENOENT", user=alice_name, path=f"/{bob_name}/secret")
        alice.quit()
        bob = ftp_login(server, bob_name)
        assert ["secret"] == bob.nlst()
        bob.quit()


class TestDataConnections:
    def test_active_mode_is_off_by_default(self, server: Daemon, user: str) -> None:
        """PORT and EPRT are 502 unless active mode is allowed, and audited."""
        client = ftp_login(server, user)
        assert "502" == _code(client.sendcmd, "PORT 127,0,0,1,100,100")
        assert "502" == _code(client.sendcmd, "EPRT |1|127.0.0.1|25700|")
        server.wait_event("ftp.bad_request", outcome="EACCES", user=user)
        client.quit()

    def test_port_to_a_third_party_is_refused(self, relaxed: Daemon, relaxed_user: str) -> None:
        """With active mode on, PORT/EPRT naming any address but the client's is 501 (no FTP bounce)."""
        client = ftp_login(relaxed, relaxed_user)
        assert "501" == _code(client.sendcmd, "PORT 127,0,0,2,100,100")
        assert "501" == _code(client.sendcmd, "EPRT |1|10.1.2.3|25700|")
        event = relaxed.wait_event("ftp.bad_request", outcome="EACCES", user=relaxed_user)
        assert "127.0.0.2" in event["error"]
        client.quit()

    def test_data_connection_from_another_address(self, old_file: ftplib.FTP, server: Daemon, user: str) -> None:
        """A connection to the passive port from another address (127.0.0.2 here) is refused: the
        waiting STOR fails with 425, nothing is written, and a normal transfer works after."""
        client = old_file
        port = ftplib.parse227(client.sendcmd("PASV"))[1]
        client.putcmd("STOR f")
        assert client.getresp().startswith("150")
        intruder = socket.socket()
        intruder.bind(("127.0.0.2", 0))
        intruder.connect(("127.0.0.1", port))
        intruder.sendall(b"planted by someone else")
        intruder.close()
        assert "425" == _code(client.getresp)
        server.wait_event("ftp.bad_request", outcome="EACCES", user=user)
        assert OLD == _content(server, user, "f")
        client.storbinary("STOR g", io.BytesIO(b"fine"))
        assert b"fine" == _content(server, user, "g")

    def test_passive_range_exhausted_is_425(self, tmp_path: Path) -> None:
        """When every passive port is taken, PASV and EPSV are 425: no random port outside the range."""
        daemon = Daemon(tmp_path)
        port = daemon.passive_ports[0]
        daemon.sections["ftp"]["passive_ports"] = f"{port}-{port}"
        write_config(daemon.config_path, daemon.sections)
        daemon.start()
        try:
            daemon.add_user("alice")
            first, second = ftp_login(daemon), ftp_login(daemon)
            assert port == ftplib.parse227(first.sendcmd("PASV"))[1]
            assert "425" == _code(second.sendcmd, "PASV")
            assert "425" == _code(second.sendcmd, "EPSV")
            daemon.wait_event("ftp.passive_ports_exhausted")
            first.close()
            second.close()
        finally:
            daemon.stop()


class TestCutOffUploads:
    def _start(self, client: ftplib.FTP, size: int = 2 * 1024 * 1024) -> socket.socket:
        client.voidcmd("TYPE I")
        conn = client.transfercmd("STOR f")
        conn.sendall(os.urandom(size))
        return conn

    def _assert_old_content_stays(self, daemon: Daemon, user: str) -> None:
        daemon.wait_event("fs.upload", user=user, path="/f", outcome="incomplete")
        assert OLD == _content(daemon, user, "f")
        assert _nothing_pending(daemon)

    def test_reset_data_connection(self, old_file: ftplib.FTP, server: Daemon, user: str) -> None:
        """A data connection reset mid-STOR aborts the upload with 426; the old content stays."""
        conn = self._start(old_file)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        assert "426" == _code(old_file.voidresp)
        self._assert_old_content_stays(server, user)

    def test_reset_tls_data_connection(self, server: Daemon, user: str) -> None:
        """The same over TLS: a reset is not the end of the file."""
        client = ftp_login(server, user, mode="explicit")
        client.storbinary("STOR f", io.BytesIO(OLD))
        conn = self._start(client)
        raw = socket.socket(fileno=conn.detach())
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        assert "426" == _code(client.voidresp)
        client.quit()
        self._assert_old_content_stays(server, user)

    def test_data_connection_without_tls_after_prot_p(self, server: Daemon, user: str) -> None:
        """After PROT P, a data connection that does not speak TLS fails the handshake: 522, nothing written."""
        client = ftp_login(server, user, mode="explicit")
        client.storbinary("STOR f", io.BytesIO(OLD))
        port = ftplib.parse229(client.sendcmd("EPSV"), ("127.0.0.1", 0))[1]
        client.putcmd("STOR f")
        assert client.getresp().startswith("150")
        with socket.create_connection(("127.0.0.1", port)) as plain:
            plain.sendall(b"this is not a TLS ClientHello\r\n" * 10)
            assert "522" == _code(client.getresp)
        client.quit()
        self._assert_old_content_stays(server, user)

    def test_client_gone(self, old_file: ftplib.FTP, server: Daemon, user: str) -> None:
        """A client that dies mid-STOR (both connections closed, control first, as at process exit)
        leaves the old content: the data connection's end is not taken for the end of the file."""
        conn = self._start(old_file)
        old_file.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]  # what exit() does to the socket
        conn.close()
        self._assert_old_content_stays(server, user)

    @pytest.mark.parametrize("run", ["first", "second"])
    def test_killed_curl_over_tls(self, old_file: ftplib.FTP, server: Daemon, user: str, tmp_path: Path,
                                  run: str) -> None:
        """curl killed with SIGKILL in the middle of an FTPS upload leaves the old content: its
        data stream ends without close_notify. (Over plain FTP a dying client's FIN is the same
        as a finished upload's; that is RFC 959's stream mode, see docs/architecture.md.)"""
        require_tool("curl")
        (tmp_path / "big").write_bytes(os.urandom(8 * 1024 * 1024))
        proc = subprocess.Popen(["curl", "-s", "-k", "--ssl-reqd", "--limit-rate", "1M", "--user",
                                 f"{user}:{PASSWORD}", "-T", str(tmp_path / "big"),
                                 f"ftp://127.0.0.1:{server.ftp_port}/f"])
        try:
            _wait_for_upload_bytes(server)
            assert proc.poll() is None
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        self._assert_old_content_stays(server, user)

    def test_abor(self, old_file: ftplib.FTP, server: Daemon, user: str) -> None:
        """ABOR in the middle of a STOR discards what was sent."""
        conn = self._start(old_file)
        assert old_file.abort().startswith("426")
        assert old_file.voidresp().startswith("226")
        conn.close()
        self._assert_old_content_stays(server, user)

    def test_stalled_data_connection_times_out(self, make_daemon: Callable[..., Daemon]) -> None:
        """A data connection idle for ftp.data_timeout seconds is closed with 421; the upload is discarded."""
        daemon = make_daemon(ftp={"data_timeout": 1.0})
        daemon.add_user("alice")
        client = ftp_login(daemon)
        client.storbinary("STOR f", io.BytesIO(OLD))
        conn = self._start(client, 100_000)
        assert "421" == _code(client.voidresp)
        conn.close()
        client.close()
        self._assert_old_content_stays(daemon, "alice")
        daemon.stop()

    def test_tls_stream_cut_without_close_notify(self, server: Daemon, user: str) -> None:
        """Over TLS, a data stream that ends in a bare FIN (no close_notify) is a truncation, not
        the end of the file: 426, and the old content stays."""
        client = ftp_login(server, user, mode="explicit")
        client.storbinary("STOR f", io.BytesIO(OLD))
        conn = self._start(client)
        os.close(conn.detach())  # the TCP connection ends without TLS's close_notify
        assert "426" == _code(client.voidresp)
        client.quit()
        self._assert_old_content_stays(server, user)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon that requires TLS on FTP."""
    with running_daemon(tmp_path_factory.mktemp("ftp-strict"), (), ftp={"require_tls": "always"}) as daemon:
        yield daemon


@pytest.fixture
def strict_user(strict: Daemon) -> str:
    """A new user of ``strict`` for this test; the test sees only the daemon's new events."""
    strict.mark()
    return new_user(strict)


class TestTlsRequired:
    def test_plain_login_is_refused_before_the_password(self, strict: Daemon, strict_user: str) -> None:
        """USER before AUTH TLS is 530 (the password is never asked for) and audited."""
        client = ftplib.FTP()
        client.connect("127.0.0.1", strict.ftp_port, timeout=30)
        assert "530" == _code(client.sendcmd, f"USER {strict_user}")
        assert "503" == _code(client.sendcmd, f"PASS {PASSWORD}")
        strict.wait_event("auth.login", user=strict_user, outcome="tls_required", protocol="ftp")
        client.close()

    def test_unprotected_data_connections_are_refused(self, strict: Daemon, strict_user: str) -> None:
        """After AUTH TLS, PASV without PROT P is 521; with it, transfers work."""
        client = ftp_login(strict, strict_user, mode="explicit")
        client.prot_c()  # type: ignore[attr-defined]
        assert "521" == _code(client.sendcmd, "PASV")
        client.prot_p()  # type: ignore[attr-defined]
        client.storbinary("STOR f", io.BytesIO(b"protected"))
        client.quit()

    def test_curl_without_tls_fails_and_with_tls_works(self, strict: Daemon, strict_user: str,
                                                       tmp_path: Path) -> None:
        """curl over plain FTP cannot log in; --ssl-reqd and ftps:// can."""
        require_tool("curl")
        (tmp_path / "f").write_bytes(b"data")
        base = ["curl", "-s", "-k", "--user", f"{strict_user}:{PASSWORD}", "-T", str(tmp_path / "f")]
        assert 0 != subprocess.run([*base, f"ftp://127.0.0.1:{strict.ftp_port}/a"], timeout=60).returncode
        assert 0 == subprocess.run([*base, "--ssl-reqd", f"ftp://127.0.0.1:{strict.ftp_port}/b"],
                                   timeout=60).returncode
        assert 0 == subprocess.run([*base, f"ftps://127.0.0.1:{strict.ftps_port}/c"], timeout=60).returncode

    def test_session_reuse_is_enforced(self, server: Daemon, user: str) -> None:
        """A data connection that does not resume the control connection's TLS session gets 522
        (stock ftplib never resumes), and nothing is written."""
        client = ftp_login(server, user, mode="explicit", reuse=False)
        with pytest.raises((ftplib.Error, OSError)):
            client.storbinary("STOR f", io.BytesIO(b"x" * 100_000))
        server.wait_event("ftp.bad_request", outcome="EPROTO", user=user)
        client.close()
        other = ftp_login(server, user)
        assert [] == other.nlst()
        other.quit()

    def test_session_reuse_can_be_relaxed(self, relaxed: Daemon, relaxed_user: str) -> None:
        """With require_tls_session_reuse false, stock ftplib works over TLS."""
        client = ftp_login(relaxed, relaxed_user, mode="explicit", reuse=False)
        client.storbinary("STOR f", io.BytesIO(b"unresumed"))
        assert b"unresumed" == _content(relaxed, relaxed_user, "f")
        client.quit()


class TestKeepsServing:
    def test_after_all_that(self, server: Daemon, user: str) -> None:
        """After abusive sessions, a normal one works and the daemon is alive."""
        for _ in range(3):
            raw = socket.create_connection(("127.0.0.1", server.ftp_port))
            raw.sendall(b"\xff\xfe garbage\r\n" + b"x" * 10_000 + b"\r\nQUIT\r\n")
            raw.close()
        client = ftp_login(server, user)
        client.storbinary("STOR ok", io.BytesIO(b"still fine"))
        assert b"still fine" == _content(server, user, "ok")
        client.quit()
        assert server.proc is not None and server.proc.poll() is None
