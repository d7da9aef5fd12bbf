"""The FTP frontend in the daemon's life: startup and certificates, shutdown, limits, passive
addresses per client network, and tenants by HOST.

Each test starts a daemon with the settings it checks, except the tenant tests, which share one
(each with a user of its own).
"""

from __future__ import annotations

import datetime
import ftplib
import io
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import PASSWORD, Daemon, exit_with_port_taken, ftp_connect, ftp_login, new_user, running_daemon


def _code(call: object, *args: object) -> str:
    with pytest.raises(ftplib.Error) as info:
        call(*args)  # type: ignore[operator]
    return str(info.value)[:3]


def _fingerprint(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    hexed = digest.finalize().hex().upper()
    return ":".join(hexed[i:i + 2] for i in range(0, len(hexed), 2))


def _connect_when_free(daemon: Daemon) -> ftplib.FTP:
    """A connection, once the readiness probe's slot is released (the daemon counts it too)."""
    for _ in range(50):
        try:
            return ftp_connect(daemon)
        except ftplib.error_temp:
            time.sleep(0.1)
    raise AssertionError("the daemon kept refusing connections")


def _refused(daemon: Daemon) -> str:
    """The first reply of a connection the daemon turns away."""
    with socket.create_connection(("127.0.0.1", daemon.ftp_port), timeout=10) as raw:
        return raw.makefile("r").readline()


class TestStartup:
    def test_announces_listeners_and_certificate(self, daemon: Daemon) -> None:
        """Startup prints the FTP and implicit FTPS addresses and the generated certificate's fingerprint."""
        text = daemon.wait_text("xferd user add NAME")
        assert f"ftp listening on 127.0.0.1:{daemon.ftp_port}" in text
        assert f"ftps listening on 127.0.0.1:{daemon.ftps_port}" in text
        cert = (daemon.data_dir / "tls" / "cert.pem").read_bytes()
        assert f"TLS certificate (FTPS, HTTPS) SHA256 {_fingerprint(cert)}" in text
        assert 0o600 == (daemon.data_dir / "tls" / "key.pem").stat().st_mode & 0o777

    def test_generated_certificate_is_kept(self, daemon: Daemon) -> None:
        """A restart reuses the certificate generated on first start."""
        first = (daemon.data_dir / "tls" / "cert.pem").read_bytes()
        daemon.stop()
        daemon.start()
        assert first == (daemon.data_dir / "tls" / "cert.pem").read_bytes()

    def test_configured_certificate(self, tmp_path: Path, make_daemon: Callable[..., Daemon]) -> None:
        """tls_cert and tls_key name the certificate served."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ftp.example.test")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        (tmp_path / "cert.pem").write_bytes(pem)
        (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        daemon = make_daemon(ftp={"tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "key.pem")})
        daemon.add_user("alice")
        client = ftp_login(daemon, mode="explicit")
        assert pem == ftplib_peer_cert_pem(client)
        client.quit()
        daemon.stop()

    def test_unusable_certificate_stops_startup(self, tmp_path: Path) -> None:
        """A certificate file that is not one is a clear startup failure."""
        (tmp_path / "bad.pem").write_text("not a certificate\n")
        daemon = Daemon(tmp_path, ftp={"tls_cert": str(tmp_path / "bad.pem"), "tls_key": str(tmp_path / "bad.pem")})
        daemon.start(wait=False)
        assert daemon.proc is not None and daemon.proc.wait(30) != 0
        daemon.proc = None
        assert "cannot load the FTPS certificate" in daemon.log_path.read_text()

    def test_ftp_port_in_use_binds_nothing(self, tmp_path: Path) -> None:
        """When the FTP port is taken, serve exits naming it, and leaves no SFTP listener behind."""
        daemon = Daemon(tmp_path)
        assert exit_with_port_taken(daemon, daemon.ftp_port) != 0
        assert f"cannot listen for FTP on port {daemon.ftp_port}" in daemon.log_path.read_text()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", daemon.port))  # free again: SFTP was closed

    def test_ftp_can_be_disabled(self, make_daemon: Callable[..., Daemon]) -> None:
        """With ftp.enabled false nothing listens on the FTP ports."""
        daemon = make_daemon(ftp={"enabled": False})
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", daemon.ftp_port), timeout=2).close()
        daemon.stop()


def ftplib_peer_cert_pem(client: ftplib.FTP) -> bytes:
    der = client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    return ssl.DER_cert_to_PEM_cert(der).encode()


class TestShutdown:
    def test_sigterm_lets_an_upload_finish(self, alice: Daemon) -> None:
        """After SIGTERM new FTP connections are refused, but a STOR in progress completes and commits."""
        data = os.urandom(3 * 1024 * 1024)
        client = ftp_login(alice)
        client.voidcmd("TYPE I")
        conn = client.transfercmd("STOR late.bin")
        conn.sendall(data[:1024 * 1024])
        assert alice.proc is not None
        alice.proc.send_signal(signal.SIGTERM)
        alice.wait_event("daemon.stopping")
        with pytest.raises(OSError):
            for _ in range(50):  # the listener closes within a fraction of a second
                socket.create_connection(("127.0.0.1", alice.ftp_port), timeout=2).close()
                time.sleep(0.1)
        conn.sendall(data[1024 * 1024:])
        conn.close()
        assert client.voidresp().startswith("226")
        client.close()
        assert 0 == alice.proc.wait(30)
        alice.proc = None
        alice.start()
        out = io.BytesIO()
        again = ftp_login(alice)
        again.retrbinary("RETR late.bin", out.write)
        again.quit()
        assert data == out.getvalue()

    def test_grace_period_ends_with_the_upload_aborted(self, make_daemon: Callable[..., Daemon]) -> None:
        """An FTP upload still open when the grace period ends is aborted, never committed."""
        daemon = make_daemon(daemon={"shutdown_grace": 1.0})
        daemon.add_user("alice")
        client = ftp_login(daemon)
        conn = client.transfercmd("STOR never.bin")
        conn.sendall(b"partial" * 1000)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert 0 == daemon.proc.wait(30)
        daemon.proc = None
        conn.close()
        client.close()
        daemon.wait_event("fs.upload", path="/never.bin", outcome="incomplete")
        daemon.start()
        again = ftp_login(daemon)
        assert [] == again.nlst()
        again.quit()
        daemon.stop()


class TestLimits:
    def test_max_connections(self, make_daemon: Callable[..., Daemon]) -> None:
        """Beyond ftp.max_connections a new connection gets 421 and is closed; a freed slot is reused."""
        daemon = make_daemon(ftp={"max_connections": 2})
        first, second = _connect_when_free(daemon), _connect_when_free(daemon)
        assert _refused(daemon).startswith("421")
        first.quit()
        third = _connect_when_free(daemon)
        third.quit()
        second.quit()
        daemon.wait_event("ftp.too_many_connections")
        daemon.stop()

    def test_max_connections_per_address(self, make_daemon: Callable[..., Daemon]) -> None:
        """Beyond ftp.max_connections_per_address connections from one address get 421."""
        daemon = make_daemon(ftp={"max_connections_per_address": 1})
        first = _connect_when_free(daemon)
        assert _refused(daemon).startswith("421")
        first.quit()
        daemon.stop()

    def test_max_connections_per_user(self, make_daemon: Callable[..., Daemon]) -> None:
        """A user's session beyond ftp.max_connections_per_user gets 421 at login; others still get in."""
        daemon = make_daemon(ftp={"max_connections_per_user": 1})
        daemon.add_user("alice")
        daemon.add_user("bob")
        first = ftp_login(daemon)
        second = ftp_connect(daemon)
        assert "421" == _code(second.login, "alice", PASSWORD)
        second.close()
        ftp_login(daemon, "bob").quit()
        daemon.wait_event("ftp.too_many_sessions", user="alice")
        first.quit()
        daemon.stop()

    def test_idle_timeout(self, make_daemon: Callable[..., Daemon]) -> None:
        """A control connection idle for ftp.idle_timeout seconds is told 421 and closed."""
        daemon = make_daemon(ftp={"idle_timeout": 1.0})
        daemon.add_user("alice")
        client = ftp_login(daemon)
        assert "421" == _code(client.getresp)
        client.close()
        daemon.stop()


class TestPassiveAddress:
    def test_per_network_address(self, make_daemon: Callable[..., Daemon]) -> None:
        """A client in a configured network is sent that network's address in PASV."""
        daemon = make_daemon(ftp={"masquerade_networks": ["10.0.0.0/8=10.1.1.1", "127.0.0.0/8=10.9.8.7"],
                                       "masquerade_address": "192.0.2.1"})
        daemon.add_user("alice")
        client = ftp_login(daemon)
        assert "10.9.8.7" == ftplib.parse227(client.sendcmd("PASV"))[0]
        client.quit()
        daemon.stop()

    def test_default_masquerade_address(self, make_daemon: Callable[..., Daemon]) -> None:
        """A client in no configured network gets masquerade_address."""
        daemon = make_daemon(ftp={"masquerade_networks": ["10.0.0.0/8=10.1.1.1"],
                                       "masquerade_address": "192.0.2.1"})
        daemon.add_user("alice")
        client = ftp_login(daemon)
        assert "192.0.2.1" == ftplib.parse227(client.sendcmd("PASV"))[0]
        client.quit()
        daemon.stop()


@pytest.fixture(scope="module")
def acme_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon that maps the FTP virtual host files.acme.test to tenant acme."""
    with running_daemon(tmp_path_factory.mktemp("ftp-acme"), (),
                        ftp={"virtual_hosts": ["files.acme.test=acme"]}) as daemon:
        yield daemon


class TestTenants:
    @pytest.fixture
    def carol(self, acme_host: Daemon) -> str:
        """A new user of tenant acme (carol, numbered) for this test alone; nobody of that name is in
        the default tenant."""
        acme_host.mark()
        return new_user(acme_host, "carol", PASSWORD, None, "--tenant", "acme")

    def test_host_selects_the_tenant(self, acme_host: Daemon, carol: str) -> None:
        """HOST names a configured virtual host; USER then logs in within its tenant."""
        client = ftp_connect(acme_host)
        assert client.sendcmd("HOST files.acme.test").startswith("220")
        client.login(carol, PASSWORD)
        client.storbinary("STOR f", io.BytesIO(b"x"))
        client.quit()
        acme_host.wait_event("auth.login", tenant="acme", user=carol, outcome="ok")

    def test_unknown_host_and_late_host(self, acme_host: Daemon, carol: str) -> None:
        """An unknown host is 504; HOST after USER is 503; without HOST carol is unknown in the default tenant."""
        client = ftp_connect(acme_host)
        assert "504" == _code(client.sendcmd, "HOST other.test")
        assert "530" == _code(client.login, carol, PASSWORD)
        client.sendcmd(f"USER {carol}")
        assert "503" == _code(client.sendcmd, "HOST files.acme.test")
        client.close()

    def test_user_at_tenant(self, acme_host: Daemon, carol: str) -> None:
        """carol@acme logs in as over SFTP, HOST or not."""
        client = ftp_login(acme_host, f"{carol}@acme", PASSWORD)
        client.quit()
