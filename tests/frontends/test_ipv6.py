"""Every protocol over IPv6 loopback (::1): SFTP, FTP with EPSV and EPRT, FTPS, and WebDAV.

One daemon listens on 127.0.0.1 and ::1 for all three frontends (active FTP allowed, to test
EPRT). The audit events name the client as ``::1``.
"""

from __future__ import annotations

import ftplib
import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import httpx
import pytest

from tests.support import PASSWORD, Daemon, ReusingFTP_TLS, running_daemon, tls_context

BOTH = ["127.0.0.1", "::1"]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("ipv6"), ("alice",), sftp={"addresses": BOTH},
                        ftp={"addresses": BOTH, "allow_active": True}, webdav={"addresses": BOTH}) as d:
        yield d


def _ftp(daemon: Daemon, tls: bool = False) -> ftplib.FTP:
    client: ftplib.FTP = ReusingFTP_TLS(context=tls_context()) if tls else ftplib.FTP()
    client.connect("::1", daemon.ftp_port, timeout=30)
    client.login("alice", PASSWORD)
    if isinstance(client, ftplib.FTP_TLS):
        client.prot_p()
    return client


def _remotes(daemon: Daemon, event: str, path: str) -> set[str]:
    return {e.get("remote", "") for e in daemon.events(event) if e.get("path") == path}


class TestSftp:
    async def test_upload_and_download(self, daemon: Daemon) -> None:
        """asyncssh over ::1: a file goes up and comes back; the audit event names ::1."""
        data = os.urandom(200_000)
        async with asyncssh.connect("::1", daemon.port, username="alice", password=PASSWORD, known_hosts=None,
                                    client_keys=None) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("/sftp6.bin", "wb") as f:
                await f.write(data)
            async with sftp.open("/sftp6.bin", "rb") as f:
                back = await f.read()
        daemon.wait_event("fs.upload", path="/sftp6.bin")
        assert (data, {"::1"}) == (back, _remotes(daemon, "fs.upload", "/sftp6.bin"))


class TestFtp:
    def test_epsv_store_list_retrieve(self, daemon: Daemon) -> None:
        """ftplib over ::1 uses EPSV (PASV has no IPv6 form): STOR, MLSD and RETR work."""
        data = os.urandom(300_000)
        with _ftp(daemon) as ftp:
            ftp.storbinary("STOR ftp6.bin", io.BytesIO(data))
            names = [name for name, _ in ftp.mlsd()]
            back = io.BytesIO()
            ftp.retrbinary("RETR ftp6.bin", back.write)
        assert ("ftp6.bin" in names, data) == (True, back.getvalue())

    def test_pasv_is_refused_over_ipv6(self, daemon: Daemon) -> None:
        """PASV can only name an IPv4 address: over IPv6 it is an error reply, not a bogus address."""
        with _ftp(daemon) as ftp, pytest.raises(ftplib.Error) as refused:
            ftp.sendcmd("PASV")
        assert str(refused.value).startswith("425 ")

    def test_eprt_active_mode(self, daemon: Daemon) -> None:
        """Active mode over IPv6 (EPRT |2|::1|port|), where allowed, carries a transfer."""
        data = os.urandom(100_000)
        with _ftp(daemon) as ftp:
            ftp.set_pasv(False)
            ftp.storbinary("STOR active6.bin", io.BytesIO(data))
            back = io.BytesIO()
            ftp.retrbinary("RETR active6.bin", back.write)
        assert data == back.getvalue()

    def test_ftps_with_protected_data(self, daemon: Daemon) -> None:
        """Explicit FTPS over ::1 with PROT P and TLS session reuse on the data connections."""
        data = os.urandom(150_000)
        with _ftp(daemon, tls=True) as ftp:
            ftp.storbinary("STOR tls6.bin", io.BytesIO(data))
            back = io.BytesIO()
            ftp.retrbinary("RETR tls6.bin", back.write)
        daemon.wait_event("fs.upload", path="/tls6.bin")
        assert (data, {"::1"}) == (back.getvalue(), _remotes(daemon, "fs.upload", "/tls6.bin"))


class TestWebdav:
    @pytest.mark.parametrize("tls", [False, True])
    def test_put_propfind_get(self, daemon: Daemon, tls: bool, tmp_path: Path) -> None:
        """httpx over http://[::1]:port (and https): PUT, PROPFIND Depth 1 and GET."""
        scheme, port = ("https", daemon.davs_port) if tls else ("http", daemon.dav_port)
        data = os.urandom(2 * 1024 * 1024 + 7)
        name = f"/dav6-{tls}.bin"
        with httpx.Client(base_url=f"{scheme}://[::1]:{port}", auth=("alice", PASSWORD), verify=tls_context(),
                          timeout=30) as c:
            put = c.put(name, content=data)
            listing = c.request("PROPFIND", "/", headers={"Depth": "1"})
            got = c.get(name)
        assert ((201, 207, 200), True, data) == (
            (put.status_code, listing.status_code, got.status_code), name.encode() in listing.content, got.content)
        daemon.wait_event("fs.upload", path=name)
        assert {"::1"} == _remotes(daemon, "fs.upload", name)
