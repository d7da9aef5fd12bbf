"""Data connections: how they open (passive port range, active mode) and how they end.

pyftpdlib's data channel treats every end of an upload as success: a clean EOF, a reset and a
TLS stream cut without close_notify all reach ``handle_close``, which sets ``transfer_finished``,
and ``close()`` then closes the file. Here the file is *finished* instead: committed only when
the client ended the stream (EOF, and close_notify over TLS), the connection was not reset, and
no hang-up has been seen on the control connection. Anything else (ABOR, a data timeout, a
reset, a lost control connection, a storage error) aborts the upload, the client gets a 4xx
reply, and the file keeps its old content.

Over plain FTP this is best effort: in stream mode the end of the data connection *is* the end
of the file, and a client process that dies closes its sockets with the same FIN as one that
finished (the kernel even closes the data socket first). Over FTPS close_notify tells them apart.
"""

from __future__ import annotations

import errno
import random
import socket
import sys
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import lib as _openssl
from pyftpdlib.exceptions import _FileReadWriteError, _RetryError
from pyftpdlib.handlers.ftp.data import DTPHandler
from pyftpdlib.handlers.ftp.dispatchers import ActiveDTP, PassiveDTP
from pyftpdlib.handlers.ftps.ssl import SSLConnectionMixin
from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED, _ERRNOS_RETRY, Acceptor
from pyftpdlib.log import logger

from xferd.frontends.bridge import HOP_BYTES
from xferd.frontends.ftp.tls import session_reused

RECV_BYTES = 256 * 1024  # per socket read; the file wrapper gathers them into 1 MiB hops
# Replies for storage failures in the middle of a transfer (RFC 959 4.2).
TRANSFER_REPLIES = {errno.EDQUOT: 552, errno.ENOSPC: 452, errno.EIO: 451}


SENDFILE_BYTES = 16 * 1024 * 1024
DRAIN_READS = 64  # socket reads per readable event, at most (the socket is non-blocking)


class DataChannel(DTPHandler):  # type: ignore[misc]  # pyftpdlib is untyped
    ac_in_buffer_size = RECV_BYTES
    ac_out_buffer_size = HOP_BYTES
    transfer_finished: bool

    def __init__(self, sock: socket.socket, cmd_channel: Any) -> None:
        self.timeout = cmd_channel.config.data_timeout
        self.cut_off = False  # the connection was reset, not ended by the client
        self.close_notified = False  # a TLS stream ended with the client's close_notify
        super().__init__(sock, cmd_channel)

    def use_sendfile(self) -> bool:
        """sendfile for a binary download over plain FTP whose blob is a local file: the kernel
        copies it to the socket (pyftpdlib drives it). TLS, ASCII mode and other stores send hops."""
        if (not self.cmd_channel.use_sendfile or self.receive or isinstance(self.socket, SSL.Connection)
                or self.cmd_channel._current_type != "i"):
            return False
        try:
            self.file_obj.fileno()
        except (AttributeError, OSError):
            return False
        # pyftpdlib asks the kernel for ac_out_buffer_size bytes per wake-up; hops of the bridge's
        # size would cost a loop iteration per MiB for no reason here.
        self.ac_out_buffer_size = SENDFILE_BYTES
        return True

    def handle_read(self) -> None:
        """An upload in binary mode is received straight into the file's hop buffer (one copy
        fewer than recv and join), several reads per wake-up; ASCII mode takes pyftpdlib's way."""
        space = getattr(self.file_obj, "space", None)
        if space is None or self._data_wrapper is not None:
            super().handle_read()
            return
        # Read until the socket is drained: one poll per burst, not per segment (over TLS, a read
        # returns at most one 16 KiB record). Past DRAIN_READS, only what TLS already holds
        # decrypted is read: the kernel would not wake this channel for it.
        reads = 0
        while reads < DRAIN_READS or self.holds_plaintext():
            reads += 1
            try:
                nbytes = self.recv_into(space())
            except _RetryError:
                return
            except OSError:
                self.handle_error()
                return
            self.tot_bytes_received += nbytes
            if not nbytes:
                self.transfer_finished = True
                return
            try:
                self.file_obj.filled(nbytes)
            except OSError as err:
                raise _FileReadWriteError(err) from err

    handle_read_event = handle_read

    def recv(self, buffer_size: int) -> bytes:
        data: bytes = self._receive(self.socket.recv, buffer_size, b"")
        return data

    def recv_into(self, view: memoryview) -> int:
        nbytes: int = self._receive(self.socket.recv_into, view, 0)
        return nbytes

    def holds_plaintext(self) -> bool:
        """Whether bytes were received and decrypted but not yet read (TLS only)."""
        return False

    def _receive(self, receive: Any, arg: Any, empty: Any) -> Any:
        """``receive(arg)``, with resets and TLS ends noted; ``empty`` (what EOF returns) on a reset."""
        try:
            data = receive(arg)
        except SSL.ZeroReturnError:
            self.close_notified = True  # the client ended the TLS stream itself
            raise
        except SSL.SysCallError as exc:
            # The TLS layer (the mixin above this class) turns a reset into an ordinary close.
            if exc.args and exc.args[0] in _ERRNOS_DISCONNECTED:
                self.cut_off = True
            raise
        except OSError as exc:
            if exc.errno in _ERRNOS_DISCONNECTED:
                self.cut_off = True
                self.handle_close()
                return empty
            if exc.errno in _ERRNOS_RETRY:
                raise _RetryError from exc
            raise
        if not data:
            self.handle_close()
        return data

    def handle_error(self) -> None:
        exc = sys.exc_info()[1]
        cause = exc.__cause__ if isinstance(exc, _FileReadWriteError) else exc
        if isinstance(cause, OSError) and cause.errno is not None:
            code = TRANSFER_REPLIES.get(cause.errno, 426)
            text = cause.strerror or "I/O error"
        else:
            self.log_exception(self)
            code, text = 426, "Internal error"
        self._resp = (f"{code} {text}; transfer aborted.", logger.warning)
        self.close()

    def close(self) -> None:
        if not self._closed and self.file_obj is not None and not self.file_obj.closed:
            self._finish_file()
        super().close()

    def ended_cleanly(self) -> bool:
        """Whether the client ended the stream: EOF, not a reset."""
        return not self.cut_off

    def _finish_file(self) -> None:
        # A download is complete when everything was sent; an upload only when the client ended it.
        ok = self.transfer_finished
        if self.receive:
            ok = ok and self.ended_cleanly() and self.cmd_channel.control_alive()
        elif getattr(self, "_filefd", None) is not None:  # sent with sendfile, not through read()
            self.file_obj.count_sent(self.tot_bytes_sent)
        try:
            self.file_obj.finish(ok)
        except OSError as exc:
            self.transfer_finished = False
            self._resp = (self.cmd_channel.reply_for(exc), logger.warning)
            return
        if self.receive and not ok and self._resp and self._resp[0].startswith("226"):
            # The stream ended, but not as a completed upload: the client must not read success.
            self.transfer_finished = False
            self._resp = ("426 Data connection closed abnormally; the upload was discarded.", logger.warning)


class TlsDataChannel(SSLConnectionMixin, DataChannel):  # type: ignore[misc]
    def __init__(self, sock: socket.socket, cmd_channel: Any) -> None:
        super().__init__(sock, cmd_channel)
        if cmd_channel._prot:
            self.secure_connection(cmd_channel.ssl_context)
            # Whole writes: one TLS write encrypts and sends a whole slice (1 MiB) in C, instead of
            # returning after each 16 KiB record to this thread's Python (pyOpenSSL's default
            # partial writes): FTPS downloads 766-854 MB/s against 555-793 on the dev daemon. A
            # write the socket cannot take at once is retried with the same slice, which
            # pyftpdlib does (the slice stays first in its queue until it is sent).
            _openssl.SSL_clear_mode(self.socket._ssl, _openssl.SSL_MODE_ENABLE_PARTIAL_WRITE)

    def send(self, data: bytes | memoryview) -> int:
        """The mixin's send, minus its copy into bytes (pyOpenSSL writes from any buffer; copying
        each 1 MiB slice again after every partial write held downloads to 314 MB/s), and write
        after write until the socket is full (over TLS one write takes the whole slice, see
        ``__init__``; a plain socket takes what fits)."""
        view = memoryview(data)
        sent = 0
        while sent < len(view) and not self._closed:
            nbytes = self._send_record(view[sent:])
            if nbytes <= 0:
                break
            sent += nbytes
        return sent

    def _send_record(self, data: memoryview) -> int:
        try:
            return int(DataChannel.send(self, data))
        except SSL.WantReadError:
            self._ssl_want_read = True
        except SSL.WantWriteError:
            self._ssl_want_write = True
        except SSL.ZeroReturnError:
            DataChannel.handle_close(self)
        except SSL.SysCallError as exc:
            code, text = exc.args
            if code in _ERRNOS_DISCONNECTED or text == "Unexpected EOF":
                DataChannel.handle_close(self)
            elif code not in _ERRNOS_RETRY:
                raise
        return 0

    def holds_plaintext(self) -> bool:
        return bool(self._ssl_requested and not self._closed and self.socket.pending() > 0)

    def recv_into(self, view: memoryview) -> int:
        """The TLS layer's translations of the mixin's recv, for recv_into."""
        if not self._ssl_requested:
            return DataChannel.recv_into(self, view)
        try:
            return DataChannel.recv_into(self, view)
        except SSL.WantReadError as exc:
            self._ssl_want_read = True
            raise _RetryError from exc
        except SSL.WantWriteError as exc:
            self._ssl_want_write = True
            raise _RetryError from exc
        except SSL.ZeroReturnError:
            DataChannel.handle_close(self)
            return 0
        except SSL.SysCallError as exc:
            code, text = exc.args
            if code in _ERRNOS_DISCONNECTED or text == "Unexpected EOF":
                DataChannel.handle_close(self)
                return 0
            raise

    def ended_cleanly(self) -> bool:
        # A protected stream ends with close_notify; a bare FIN could be injected to truncate an
        # upload (lftp, curl, rclone and ftplib all send it, so this is enforced, unlike vsftpd's
        # strict_ssl_read_eof, which is off by default).
        return super().ended_cleanly() and (not self._ssl_requested or self.close_notified)

    def handle_error(self) -> None:
        # The mixin's version closes without a reply; a failed STOR must still get one.
        self._error = True
        DataChannel.handle_error(self)

    def handle_failed_ssl_handshake(self) -> None:
        self.cmd_channel.respond("522 TLS handshake on the data connection failed.")
        self.close()

    def handle_ssl_established(self) -> None:
        cmd = self.cmd_channel
        if cmd.config.require_tls_session_reuse and not session_reused(self.socket):
            cmd.audit_bad_request("EPROTO", "data connection did not resume the control connection's TLS session")
            cmd.respond("522 TLS session reuse is required on data connections.")
            self.close()


class PassiveListener(PassiveDTP):  # type: ignore[misc]
    """PASV/EPSV: a port from the configured range only (425 when none is free, never a random
    port), the address advertised for the client's network, and connections from any address
    but the client's refused (no FTP bounce)."""

    def __init__(self, cmd_channel: Any, extmode: bool = False) -> None:
        self.cmd_channel = cmd_channel
        self.log = cmd_channel.log
        self.log_exception = cmd_channel.log_exception
        self.timeout = cmd_channel.config.data_timeout
        Acceptor.__init__(self, ioloop=cmd_channel.ioloop)
        local_ip = cmd_channel.socket.getsockname()[0]
        sock = _bind_in_range(cmd_channel.socket.family, local_ip, *cmd_channel.config.passive_range)
        if sock is None:
            self.failed = True
            cmd_channel.log_warning("ftp.passive_ports_exhausted", ports=cmd_channel.config.passive_ports)
            cmd_channel.respond("425 No passive port is free; try again later.")
            return
        self.failed = False
        self.set_socket(sock)
        self.listen(5)  # already listening; this sets asyncore's accepting state
        port = sock.getsockname()[1]
        if extmode:
            cmd_channel.respond(f"229 Entering extended passive mode (|||{port}|).")
        else:
            ip = cmd_channel.advertised_address(local_ip)
            cmd_channel.respond(f"227 Entering passive mode ({ip.replace('.', ',')},{port >> 8},{port & 255}).")
        self.call_later(self.timeout, self.handle_timeout)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        cmd = self.cmd_channel
        if cmd.plain_ip(addr[0]) != cmd.plain_ip(cmd.remote_ip):
            sock.close()
            cmd.audit_bad_request("EACCES", f"data connection from {addr[0]}, not the client's address")
            if cmd.refuse_pending_transfer("425 Rejected a data connection from another address."):
                self.close()
                cmd._dtp_acceptor = None
            return
        super().handle_accepted(sock, addr)


class ActiveConnector(ActiveDTP):  # type: ignore[misc]
    def __init__(self, ip: str, port: int, cmd_channel: Any) -> None:
        self.timeout = cmd_channel.config.data_timeout
        super().__init__(ip, port, cmd_channel)


def _bind_in_range(family: int, ip: str, low: int, high: int) -> socket.socket | None:
    """A listening socket on a free port of [low, high], or None when all are taken.

    Ports are tried from a random start so that sessions spread over the range. SO_REUSEADDR lets
    a port with connections in TIME_WAIT be reused, and also lets two threads bind one port at
    once: only ``listen`` is exclusive, so a failure there means "taken" too.
    """
    ports = list(range(low, high + 1))
    start = random.randrange(len(ports))  # noqa: S311 - spreading load, not a secret
    for port in ports[start:] + ports[:start]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            sock.listen(5)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        sock.setblocking(False)
        return sock
    return None
