"""The FTP file commands, each one VirtualFS call through the filesystem adapter.

Beyond pyftpdlib, or where it deviates from what clients need:

- listings (LIST, NLST, STAT, MLSD) come with their attributes in one call; MLSD of a missing
  directory is ``550`` (pyftpdlib says ``501``, which rclone treats as fatal);
- MLST/MLSD facts include ``perm`` from the user's real grants and a stable ``unique``;
- SIZE, MDTM and MFMT take one call each, on any entry the user may list;
- REST works for RETR, STOR (writes from the offset, keeps the rest of the file) and APPE (when it
  names the end of the file); an offset past the end is ``554``;
- HASH (draft-bryan-ftpext-hash: SHA-256, SHA-1, MD5, CRC32, chosen with OPTS HASH), XCRC, XMD5,
  XSHA1 and XSHA256: SHA-256 and MD5 come from the sums stored at upload, the others are read once;
- AVBL answers from the quota (or the store's free space);
- FEAT lists exactly these.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from pyftpdlib.handlers.ftp.producers import FileProducer

from xferd.frontends.bridge import HOP_BYTES
from xferd.frontends.ftp import listing
from xferd.frontends.ftp.files import RestOutOfRange
from xferd.frontends.ftp.handler import SessionHandler
from xferd.frontends.ftp.listing import DEFAULT_FACTS, FACTS, feat_facts, list_lines, mlsd_lines, mlsx_facts
from xferd.vfs import paths

HASHES = {"SHA-256": "sha256", "SHA-1": "sha1", "MD5": "md5", "CRC32": "crc32"}
LISTING_CHUNK = 256 * 1024


def _cmd(perm: str | None, auth: bool, arg: bool | None, text: str) -> dict[str, Any]:
    return {"perm": perm, "auth": auth, "arg": arg, "help": f"Syntax: {text}"}


class _HopProducer(FileProducer):  # type: ignore[misc]  # pyftpdlib is untyped
    buffer_size = HOP_BYTES


class _LinesProducer:
    """Listing lines sent in chunks of about 256 KiB (pyftpdlib's producer sends 20 lines at a time)."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self.lines = lines

    def more(self) -> bytes:
        chunk: list[bytes] = []
        size = 0
        for line in self.lines:
            chunk.append(line)
            size += len(line)
            if size >= LISTING_CHUNK:
                break
        return b"".join(chunk)


def _parse_timeval(text: str) -> float | None:
    """YYYYMMDDHHMMSS[.sss] in UTC (MFMT)."""
    whole, _, fraction = text.partition(".")
    try:
        when = datetime.datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=datetime.UTC)
        return when.timestamp() + (float("0." + fraction) if fraction else 0.0)
    except ValueError:
        return None


class FtpHandler(SessionHandler):
    proto_cmds = {
        **SessionHandler.proto_cmds,
        "HOST": _cmd(None, False, True, "HOST <SP> host-name (select a virtual host, RFC 7151)."),
        "HASH": _cmd("r", True, True, "HASH <SP> file-name (checksum; OPTS HASH chooses the algorithm)."),
        "XCRC": _cmd("r", True, True, "XCRC <SP> file-name (CRC32 of a file)."),
        "XMD5": _cmd("r", True, True, "XMD5 <SP> file-name (MD5 of a file)."),
        "XSHA1": _cmd("r", True, True, "XSHA1 <SP> file-name (SHA-1 of a file)."),
        "XSHA256": _cmd("r", True, True, "XSHA256 <SP> file-name (SHA-256 of a file)."),
        "AVBL": _cmd("l", True, None, "AVBL [<SP> dir-name] (bytes available for uploads)."),
    }

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        self._hash_name = "SHA-256"
        super().__init__(conn, server, ioloop)
        self._available_facts = list(FACTS)
        self._current_facts = list(DEFAULT_FACTS)

    def ftp_FEAT(self, line: str) -> None:
        features = ["AUTH TLS", "PBSZ", "PROT", "EPSV", "HOST", "MDTM", "MFMT", "SIZE", "REST STREAM", "TVFS",
                    "UTF8", "AVBL", "XCRC", "XMD5", "XSHA1", "XSHA256",
                    f"MLST {feat_facts(self._current_facts)}",
                    "HASH " + ";".join(f"{n}{'*' if n == self._hash_name else ''}" for n in HASHES)]
        if self.config.allow_active:
            features.append("EPRT")
        self.push("211-Features supported:\r\n" + "".join(f" {f}\r\n" for f in sorted(features)))
        self.respond("211 End FEAT.")

    def ftp_OPTS(self, line: str) -> None:
        cmd, _, arg = line.partition(" ")
        if cmd.upper() != "HASH":
            super().ftp_OPTS(line)
        elif not arg.strip():
            self.respond(f"200 {self._hash_name}")
        elif arg.strip().upper() in HASHES:
            self._hash_name = arg.strip().upper()
            self.respond(f"200 {self._hash_name}")
        else:
            self.respond("504 Unknown hash algorithm.")

    # -- listings ----------------------------------------------------------------------------------

    def ftp_LIST(self, path: str) -> str | None:
        try:
            _, entries, owners = self.fs.listing(path, files_too=True, owners=True)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return None
        self.push_dtp_data(_LinesProducer(list_lines(entries, owners)), isproducer=True, cmd="LIST")
        return path

    def ftp_NLST(self, path: str) -> str | None:
        try:
            _, entries, _ = self.fs.listing(path, files_too=True)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return None
        lines = (f"{name}\r\n".encode("utf-8", "surrogateescape") for name, _ in entries)
        self.push_dtp_data(_LinesProducer(lines), isproducer=True, cmd="NLST")
        return path

    def ftp_MLSD(self, path: str) -> str | None:
        try:
            real, entries, _ = self.fs.listing(path)
        except NotADirectoryError:
            self.respond("501 Not a directory.")  # RFC 3659 7.2.1
            return None
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return None
        assert self.session is not None
        lines = mlsd_lines(real, entries, self._current_facts, self.session)
        self.push_dtp_data(_LinesProducer(lines), isproducer=True, cmd="MLSD")
        return path

    def ftp_MLST(self, path: str) -> str | None:
        try:
            inode = self.fs.stat(path)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return None
        assert self.session is not None
        facts = mlsx_facts(path, paths.split(path), inode, self._current_facts, self.session)
        self.push(f"250-Listing {path}\r\n {facts} {path}\r\n")
        self.respond("250 End.")
        return path

    def ftp_STAT(self, path: str) -> str | None:
        if not path:
            return super().ftp_STAT(path)  # type: ignore[no-any-return]
        try:
            _, entries, owners = self.fs.listing(path, files_too=True, owners=True)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return None
        self.push(f'213-Status of "{path}":\r\n')
        self.push_with_producer(_LinesProducer(list_lines(entries, owners)))
        self.respond("213 End of status.")
        return path

    # -- attributes --------------------------------------------------------------------------------

    def ftp_SIZE(self, path: str) -> None:
        try:
            inode = self.fs.stat(path)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return
        if inode.kind != "file":
            self.respond(f"550 {path} is not a regular file.")
            return
        self.respond(f"213 {inode.size}")

    def ftp_MDTM(self, path: str) -> str | None:
        try:
            inode = self.fs.stat(path)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return None
        self.respond(f"213 {listing.timeval(inode.mtime)}")
        return path

    def ftp_MFMT(self, path: str, timeval: str) -> str | None:
        when = _parse_timeval(timeval)
        if when is None:
            self.respond("501 Invalid time; expected YYYYMMDDHHMMSS.")
            return None
        try:
            inode = self.fs.utime(path, when)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return None
        self.respond(f"213 Modify={listing.timeval(inode.mtime)}; {path}")
        return path

    def ftp_RNFR(self, path: str) -> None:
        if path == "/":
            self.respond("550 The home directory cannot be renamed.")
            return
        try:
            self.fs.lstat(path)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return
        self._rnfr = path
        self.respond("350 Ready for destination name.")

    # -- transfers ---------------------------------------------------------------------------------

    def ftp_RETR(self, file: str) -> str | None:
        rest, self._restart_position = self._restart_position, 0
        try:
            fd = self.fs.open_download(file, rest)
        except RestOutOfRange as exc:
            self.respond(f"554 {exc.strerror}.")
            return None
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return None
        self.push_dtp_data(_HopProducer(fd, self._current_type), isproducer=True, file=fd, cmd="RETR")
        return file

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        append = "a" in mode
        rest, self._restart_position = self._restart_position, 0
        try:
            fd = self.fs.open_upload(file, rest, append)
        except RestOutOfRange as exc:
            self.respond(f"554 {exc.strerror}.")
            return None
        except OSError as exc:
            self.respond(self.reply_for(exc, store=True))
            return None
        cmd = "APPE" if append else "STOR"
        if self.data_channel is not None:
            self.respond("125 Data connection already open; transfer starting.")
            self.data_channel.file_obj = fd
            self.data_channel.enable_receiving(self._current_type, cmd)
        else:
            self.respond("150 File status okay; about to open data connection.")
            self._in_dtp_queue = (fd, cmd)
        return file

    def ftp_APPE(self, file: str) -> str | None:
        return self.ftp_STOR(file, mode="a")

    # -- checksums and space -----------------------------------------------------------------------

    def ftp_HASH(self, path: str) -> None:
        try:
            size, digest = self.fs.checksum(path, HASHES[self._hash_name])
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return
        self.respond(f"213 {self._hash_name} 0-{size} {digest} {path}")

    def _legacy_hash(self, path: str, algorithm: str) -> None:
        try:
            _, digest = self.fs.checksum(path, algorithm)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return
        self.respond(f"250 {digest.upper() if algorithm == 'crc32' else digest}")

    def ftp_XCRC(self, path: str) -> None:
        self._legacy_hash(path, "crc32")

    def ftp_XMD5(self, path: str) -> None:
        self._legacy_hash(path, "md5")

    def ftp_XSHA1(self, path: str) -> None:
        self._legacy_hash(path, "sha1")

    def ftp_XSHA256(self, path: str) -> None:
        self._legacy_hash(path, "sha256")

    def ftp_AVBL(self, path: str) -> None:
        try:
            free = self.fs.available(path)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return
        self.respond(f"213 {free}")
