"""Bad input over SFTP: each gets a clear error and an audit event, and the daemon keeps serving.

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import io
import struct
import time
from typing import Any

import paramiko
import pytest
from paramiko.sftp import CMD_READ, int64

from tests.support import PASSWORD, Daemon, paramiko_sftp

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_STATUS = 1, 2, 3, 101
FX_FAILURE, FX_BAD_MESSAGE, FX_OP_UNSUPPORTED = 4, 5, 8


class RawSftp:
    """An SFTP channel spoken byte by byte, to send what no client library would."""

    def __init__(self, daemon: Daemon, user: str) -> None:
        self.transport = paramiko.Transport(("127.0.0.1", daemon.port))
        self.transport.connect(username=user, password=PASSWORD)
        self.chan = self.transport.open_session()
        self.chan.invoke_subsystem("sftp")
        self.send(struct.pack(">BI", FXP_INIT, 3))
        kind, _ = self.receive()
        assert kind == FXP_VERSION

    def send(self, payload: bytes) -> None:
        self.chan.sendall(struct.pack(">I", len(payload)) + payload)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.chan.recv(n - len(data))
            if not chunk:
                raise EOFError("channel closed")
            data += chunk
        return data

    def receive(self) -> tuple[int, bytes]:
        (length,) = struct.unpack(">I", self._exactly(4))
        body = self._exactly(length)
        return body[0], body[1:]

    def status(self) -> tuple[int, str]:
        kind, body = self.receive()
        assert kind == FXP_STATUS
        code, text_len = struct.unpack(">II", body[4:12])
        return code, body[12:12 + text_len].decode()

    def close(self) -> None:
        self.transport.close()


def _error_of(call: Any, *args: Any) -> OSError:
    with pytest.raises(OSError) as info:
        call(*args)
    return info.value


class TestBadLogins:
    def test_wrong_password_is_refused_and_audited(self, server: Daemon, user: str) -> None:
        """A wrong password fails authentication and logs auth.login bad_credentials."""
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_sftp(server, user, password="wrong")
        server.wait_event("auth.login", user=user, outcome="bad_credentials")

    def test_unknown_user_is_refused_like_a_wrong_password(self, server: Daemon, user: str) -> None:
        """An unknown name fails the same way and logs auth.login unknown_user."""
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_sftp(server, "nobody", password=PASSWORD)
        server.wait_event("auth.login", user="nobody", outcome="unknown_user")


class TestBadRequests:
    def test_malformed_packet_gets_bad_message(self, server: Daemon, user: str) -> None:
        """An OPEN whose path length runs past the packet is BAD_MESSAGE; the session goes on."""
        raw = RawSftp(server, user)
        raw.send(struct.pack(">BII", FXP_OPEN, 7, 1000) + b"short")
        code, _ = raw.status()
        assert code == FX_BAD_MESSAGE
        raw.send(struct.pack(">BI", 250, 8))
        code, _ = raw.status()
        assert code == FX_OP_UNSUPPORTED
        raw.close()
        server.wait_event("sftp.bad_request", user=user, outcome="EBADMSG")
        server.wait_event("sftp.bad_request", user=user, outcome="EOPNOTSUPP")

    def test_path_with_nul_byte(self, server: Daemon, user: str) -> None:
        """A NUL byte in a path is refused, named in the error, and audited."""
        client = paramiko_sftp(server, user)
        error = _error_of(client.open, "bad\x00name", "wb")
        assert "NUL" in str(error)
        server.wait_event("fs.open_write", user=user, outcome="EINVAL")
        client.close()

    def test_100k_path(self, server: Daemon, user: str) -> None:
        """A 100 KB path is refused as too long."""
        client = paramiko_sftp(server, user)
        error = _error_of(client.stat, "a/" * 50_000)
        assert "too long" in str(error)
        server.wait_event("fs.stat", user=user, outcome="ENAMETOOLONG")
        client.close()

    def test_empty_file_name(self, server: Daemon, user: str) -> None:
        """An empty name cannot be created."""
        client = paramiko_sftp(server, user)
        _error_of(client.open, "", "wb")
        _error_of(client.mkdir, "")
        server.wait_event("fs.mkdir", user=user, outcome="EINVAL")
        client.close()

    def test_read_on_closed_handle(self, server: Daemon, user: str) -> None:
        """A read on a handle that was closed is refused as an invalid handle."""
        client = paramiko_sftp(server, user)
        client.putfo(io.BytesIO(b"data"), "f")
        f = client.open("f", "rb")
        handle = f.handle
        f.close()
        error = _error_of(client._request, CMD_READ, handle, int64(0), 4)
        assert "handle" in str(error).lower()
        server.wait_event("sftp.bad_request", user=user, outcome="EBADF")
        client.close()

    def test_the_daemon_keeps_serving(self, server: Daemon, user: str) -> None:
        """After all of the above on one session, another session works normally."""
        raw = RawSftp(server, user)
        raw.send(struct.pack(">BII", FXP_OPEN, 1, 2**31) + b"x")
        raw.status()
        other = paramiko_sftp(server, user)
        other.putfo(io.BytesIO(b"still fine"), "ok.txt")
        assert other.open("ok.txt").read() == b"still fine"
        other.close()
        raw.close()
        time.sleep(0.1)
        assert server.proc is not None and server.proc.poll() is None


class TestTolerance:
    def test_write_with_trailing_bytes_is_accepted(self, server: Daemon, user: str) -> None:
        """A WRITE with bytes after its data (as rclone 1.60 sends) succeeds and stores only the data."""
        raw = RawSftp(server, user)
        path = b"/trailing.bin"
        pflags = 0x02 | 0x08 | 0x10  # WRITE | CREAT | TRUNC
        raw.send(struct.pack(">BII", FXP_OPEN, 1, len(path)) + path + struct.pack(">II", pflags, 0))
        kind, body = raw.receive()
        assert kind == 102  # FXP_HANDLE
        (hlen,) = struct.unpack(">I", body[4:8])
        handle = body[8:8 + hlen]
        data = b"exactly these bytes"
        write = struct.pack(">BII", 6, 2, len(handle)) + handle + struct.pack(">QI", 0, len(data)) + data
        raw.send(write + b"\x00\x00\x00\x00junk")
        assert raw.status()[0] == 0
        raw.send(struct.pack(">BII", 4, 3, len(handle)) + handle)  # CLOSE
        assert raw.status()[0] == 0
        raw.close()
        client = paramiko_sftp(server, user)
        assert client.open("trailing.bin").read() == data
        client.close()

    def test_realpath_of_a_missing_last_component(self, server: Daemon, user: str) -> None:
        """REALPATH resolves a path whose last component does not exist yet (OpenSSH 9 put -r needs it),
        but not one whose parent is missing."""
        client = paramiko_sftp(server, user)
        client.mkdir("dir")
        assert client.normalize("dir/not-yet") == "/dir/not-yet"
        assert client.normalize("./dir/../dir/x/..") == "/dir"
        assert _error_of(client.normalize, "missing/not-yet").errno == 2
        client.close()
