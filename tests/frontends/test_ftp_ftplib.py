"""Python's ftplib against a real daemon: every command the FTP frontend serves, plain and over TLS.

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import ssl
import time
import zlib
from collections.abc import Iterator

import pytest

from tests.support import Daemon, FtpMode, ftp_login, new_user


def _put(client: ftplib.FTP, name: str, data: bytes) -> str:
    return client.storbinary(f"STOR {name}", io.BytesIO(data))


def _get(client: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    out = io.BytesIO()
    client.retrbinary(f"RETR {name}", out.write, rest=rest)
    return out.getvalue()


def _code(call: object, *args: object) -> str:
    with pytest.raises(ftplib.Error) as info:
        call(*args)  # type: ignore[operator]
    return str(info.value)[:3]


@pytest.fixture
def ftp(server: Daemon, user: str) -> Iterator[ftplib.FTP]:
    """An FTP session of this test's user."""
    client = ftp_login(server, user)
    yield client
    client.close()


class TestTransfers:
    @pytest.mark.parametrize("mode", ["plain", "explicit", "implicit", "explicit", "implicit"])
    def test_upload_and_download_are_byte_exact(self, server: Daemon, user: str, mode: FtpMode) -> None:
        """A 5 MB file and an empty file go up and come back unchanged (TLS runs are repeated:
        shutdown bugs on data connections are intermittent)."""
        client = ftp_login(server, user, mode=mode)
        data = os.urandom(5 * 1024 * 1024 + 17)
        assert _put(client, "big.bin", data).startswith("226")
        assert _put(client, "empty", b"").startswith("226")
        assert data == _get(client, "big.bin")
        assert b"" == _get(client, "empty")
        client.quit()

    @pytest.mark.parametrize("mode", ["explicit", "implicit"])
    def test_a_slow_reader_gets_every_byte_over_tls(self, server: Daemon, user: str, mode: FtpMode) -> None:
        """A TLS download to a client that reads slowly: the server's whole-slice TLS writes find
        the socket full again and again and are retried with the same slice; the bytes arrive
        intact and in order."""
        client = ftp_login(server, user, mode=mode)
        data = os.urandom(12 * 1024 * 1024 + 5)
        assert _put(client, "big.bin", data).startswith("226")
        out = io.BytesIO()
        conn = client.transfercmd("RETR big.bin")
        try:
            while chunk := conn.recv(65536):
                out.write(chunk)
                if out.tell() < 4 * 1024 * 1024:
                    time.sleep(0.002)  # the server's socket buffer fills while this reader naps
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()  # close_notify, as ftplib's retrbinary sends it
        finally:
            conn.close()
        assert client.voidresp().startswith("226")
        assert data == out.getvalue()
        client.quit()

    @pytest.mark.parametrize("mode", ["plain", "explicit"])
    def test_download_is_audited_with_its_bytes(self, server: Daemon, user: str, mode: FtpMode) -> None:
        """RETR, whole and after REST, delivers the right bytes and logs fs.download with the count
        (plain FTP sends local blobs with sendfile, TLS in hops: both are counted)."""
        client = ftp_login(server, user, mode=mode)
        data = os.urandom(3 * 1024 * 1024 + 5)
        _put(client, "d.bin", data)
        assert data == _get(client, "d.bin")
        assert data[1000:] == _get(client, "d.bin", rest=1000)
        client.quit()
        server.wait_event("fs.download", user=user, path="/d.bin", outcome="ok", bytes=len(data))
        server.wait_event("fs.download", user=user, path="/d.bin", outcome="ok", bytes=len(data) - 1000)

    def test_upload_replaces_atomically_and_is_audited(self, ftp: ftplib.FTP, server: Daemon, user: str) -> None:
        """STOR over an existing file replaces it and logs fs.upload with the SHA-256."""
        _put(ftp, "f", b"old")
        _put(ftp, "f", b"new content")
        assert b"new content" == _get(ftp, "f")
        event = server.wait_event("fs.upload", user=user, path="/f", outcome="ok", size=11)
        assert hashlib.sha256(b"new content").hexdigest() == event["sha256"]
        assert "ftp" == event["protocol"]

    def test_rest_resumes_a_download(self, ftp: ftplib.FTP) -> None:
        """RETR after REST sends the file from the offset."""
        data = os.urandom(3 * 1024 * 1024)
        _put(ftp, "f", data)
        assert data[1_234_567:] == _get(ftp, "f", rest=1_234_567)

    def test_rest_resumes_an_upload(self, ftp: ftplib.FTP) -> None:
        """STOR after REST writes from the offset and keeps what was before it."""
        data = os.urandom(2 * 1024 * 1024 + 5)
        _put(ftp, "f", data[:700_000])
        ftp.storbinary("STOR f", io.BytesIO(data[700_000:]), rest=700_000)
        assert data == _get(ftp, "f")

    def test_rest_beyond_the_end_is_554(self, ftp: ftplib.FTP) -> None:
        """A REST offset past the end of the file is refused for RETR and STOR, and nothing changes."""
        _put(ftp, "f", b"12345")
        assert "554" == _code(_get, ftp, "f", 6)
        assert "554" == _code(ftp.storbinary, "STOR f", io.BytesIO(b"x"), 8192, None, 9)
        assert b"12345" == _get(ftp, "f")

    def test_appe_appends_and_creates(self, ftp: ftplib.FTP) -> None:
        """APPE adds to the end of a file, and creates a missing one."""
        ftp.storbinary("APPE log", io.BytesIO(b"one\n"))
        ftp.storbinary("APPE log", io.BytesIO(b"two\n"))
        assert b"one\ntwo\n" == _get(ftp, "log")

    def test_stou_stores_under_a_new_name(self, ftp: ftplib.FTP) -> None:
        """STOU picks a name nobody has and says it."""
        reply = ftp.storbinary("STOU", io.BytesIO(b"unique"))
        assert reply.startswith("226")
        names = ftp.nlst()
        assert 1 == len(names)
        assert b"unique" == _get(ftp, names[0])

    def test_ascii_mode_converts_line_ends(self, ftp: ftplib.FTP) -> None:
        """TYPE A uploads store LF line ends and downloads send CRLF."""
        ftp.storlines("STOR text", io.BytesIO(b"a\r\nb\r\n"))
        assert b"a\nb\n" == _get(ftp, "text")
        lines: list[str] = []
        ftp.retrlines("RETR text", lines.append)
        assert ["a", "b"] == lines


class TestListings:
    def test_mlsd_facts(self, ftp: ftplib.FTP) -> None:
        """MLSD gives type, size, modify, perm, unique and unix.mode for each entry."""
        ftp.mkd("dir")
        _put(ftp, "dir/f.txt", b"hello")
        ftp.sendcmd("MFMT 20200102030405 dir/f.txt")
        entries = dict(ftp.mlsd("dir"))
        facts = entries["f.txt"]
        assert ("file", "5", "20200102030405", "0644") == (facts["type"], facts["size"], facts["modify"],
                                                         facts["unix.mode"])
        assert set("adfrw") == set(facts["perm"])
        root = dict(ftp.mlsd())
        assert "dir" == root["dir"]["type"]
        assert set("elcmpdf") == set(root["dir"]["perm"])
        assert root["dir"]["unique"] != facts["unique"]

    def test_mlsd_of_a_missing_directory_is_550(self, ftp: ftplib.FTP) -> None:
        """MLSD on a directory that does not exist is 550, not 501 (rclone treats 501 as fatal)."""
        assert "550" == _code(lambda: list(ftp.mlsd("missing")))

    def test_mlsd_of_a_file_is_501(self, ftp: ftplib.FTP) -> None:
        """MLSD on a file is 501, as RFC 3659 says."""
        _put(ftp, "f", b"x")
        assert "501" == _code(lambda: list(ftp.mlsd("f")))

    def test_opts_mlst_chooses_facts(self, ftp: ftplib.FTP) -> None:
        """OPTS MLST narrows the facts MLSD sends, and FEAT stars the chosen ones."""
        _put(ftp, "f", b"x")
        assert "200 MLST OPTS size;type;" == ftp.sendcmd("OPTS MLST size;type;")
        assert {"size": "1", "type": "file"} == dict(ftp.mlsd())["f"]
        assert " MLST type*;size*;modify;perm;unique;unix.mode;" in ftp.sendcmd("FEAT")

    def test_mlst_on_the_control_connection(self, ftp: ftplib.FTP) -> None:
        """MLST answers for one path, with its full name."""
        _put(ftp, "f", b"abc")
        reply = ftp.sendcmd("MLST f").splitlines()
        assert reply[1].startswith(" type=file;size=3;")
        assert reply[1].endswith(" /f")

    def test_list_nlst_and_stat(self, ftp: ftplib.FTP, user: str) -> None:
        """LIST shows ls -l lines with the owner, NLST bare names, STAT the listing on the control connection."""
        ftp.mkd("d")
        _put(ftp, "d/file name.txt", b"12345")
        lines: list[str] = []
        ftp.retrlines("LIST d", lines.append)
        assert 1 == len(lines)
        assert lines[0].startswith("-rw-r--r--")
        assert f" {user:<8} {user:<8} " in lines[0] and "        5 " in lines[0]
        assert lines[0].endswith(" file name.txt")
        assert ["file name.txt"] == ftp.nlst("d")
        assert "file name.txt" in ftp.sendcmd("STAT d")

    def test_listing_2000_entries(self, ftp: ftplib.FTP) -> None:
        """A directory of 2000 entries lists completely over LIST, NLST and MLSD."""
        ftp.mkd("many")
        for i in range(2000):
            ftp.storbinary(f"STOR many/f{i:05d}", io.BytesIO(b""))
        assert 2000 == len(ftp.nlst("many"))
        assert 2000 == len(list(ftp.mlsd("many")))
        lines: list[str] = []
        ftp.retrlines("LIST many", lines.append)
        assert 2000 == len(lines)


class TestAttributes:
    def test_size_mdtm_mfmt(self, ftp: ftplib.FTP) -> None:
        """SIZE and MDTM answer from the metadata; MFMT sets the modification time."""
        _put(ftp, "f", b"x" * 1234)
        assert 1234 == ftp.size("f")
        assert "213 Modify=20210304050607; /f" == ftp.sendcmd("MFMT 20210304050607 f")
        assert "213 20210304050607" == ftp.sendcmd("MDTM f")

    def test_size_of_a_directory_or_missing_file_is_550(self, ftp: ftplib.FTP) -> None:
        """SIZE refuses a directory and a missing file with 550."""
        ftp.mkd("d")
        assert "550" == _code(ftp.size, "d")
        assert "550" == _code(ftp.size, "nothing")

    def test_bad_mfmt_time_is_501(self, ftp: ftplib.FTP) -> None:
        """MFMT with a malformed time is a syntax error."""
        _put(ftp, "f", b"x")
        assert "501" == _code(ftp.sendcmd, "MFMT 2021-03-04 f")

    def test_site_chmod(self, ftp: ftplib.FTP) -> None:
        """SITE CHMOD changes the mode MLSD shows."""
        _put(ftp, "f", b"x")
        assert ftp.sendcmd("SITE CHMOD 600 f").startswith("200")
        assert "0600" == dict(ftp.mlsd())["f"]["unix.mode"]


class TestTree:
    def test_mkd_cwd_pwd_rnfr_rnto_dele_rmd(self, ftp: ftplib.FTP) -> None:
        """Directories and renames work as over any FTP server."""
        ftp.mkd("a")
        ftp.cwd("a")
        assert "/a" == ftp.pwd()
        _put(ftp, "f", b"x")
        ftp.cwd("..")
        ftp.rename("a/f", "g")
        ftp.rename("a", "b")
        assert {"b", "g"} == set(ftp.nlst())
        ftp.delete("g")
        ftp.rmd("b")
        assert [] == ftp.nlst()

    def test_rnto_replaces_a_file(self, ftp: ftplib.FTP) -> None:
        """Renaming onto an existing file replaces it, as rename(2) does."""
        _put(ftp, "a", b"A")
        _put(ftp, "b", b"B")
        ftp.rename("a", "b")
        assert b"A" == _get(ftp, "b")
        assert ["b"] == ftp.nlst()

    def test_refusals(self, ftp: ftplib.FTP) -> None:
        """Missing files, non-empty directories, the home itself and RNTO without RNFR are refused."""
        ftp.mkd("full")
        _put(ftp, "full/f", b"x")
        assert "550" == _code(ftp.delete, "missing")
        assert "550" == _code(ftp.rmd, "full")
        assert "550" == _code(ftp.rename, "missing", "x")
        assert "550" == _code(ftp.sendcmd, "RNFR /")
        assert "503" == _code(ftp.sendcmd, "RNTO x")
        assert "550" == _code(ftp.cwd, "full/f")


class TestChecksums:
    def test_hash_defaults_to_stored_sha256(self, ftp: ftplib.FTP) -> None:
        """HASH answers SHA-256 with the range and the path (draft-bryan-ftpext-hash)."""
        data = os.urandom(100_000)
        _put(ftp, "f", data)
        assert f"213 SHA-256 0-100000 {hashlib.sha256(data).hexdigest()} /f" == ftp.sendcmd("HASH f")

    @pytest.mark.parametrize("name", ["SHA-1", "MD5", "CRC32"])
    def test_opts_hash_chooses_the_algorithm(self, ftp: ftplib.FTP, name: str) -> None:
        """OPTS HASH switches the algorithm; FEAT stars it."""
        data = os.urandom(50_000)
        _put(ftp, "f", data)
        expected = {"SHA-1": hashlib.sha1(data).hexdigest(), "MD5": hashlib.md5(data).hexdigest(),
                    "CRC32": f"{zlib.crc32(data):08x}"}[name]
        assert f"200 {name}" == ftp.sendcmd(f"OPTS HASH {name}")
        assert f"213 {name} 0-50000 {expected} /f" == ftp.sendcmd("HASH f")
        assert f"{name}*" in ftp.sendcmd("FEAT")

    def test_unknown_hash_algorithm_is_504(self, ftp: ftplib.FTP) -> None:
        """OPTS HASH with an algorithm the server lacks keeps the current one."""
        assert "504" == _code(ftp.sendcmd, "OPTS HASH SHA-3")
        assert "200 SHA-256" == ftp.sendcmd("OPTS HASH")

    def test_legacy_checksum_commands(self, ftp: ftplib.FTP) -> None:
        """XCRC, XMD5, XSHA1 and XSHA256 answer 250 with the digest."""
        data = b"checksum me"
        _put(ftp, "f", data)
        assert f"250 {zlib.crc32(data):08X}" == ftp.sendcmd("XCRC f")
        assert f"250 {hashlib.md5(data).hexdigest()}" == ftp.sendcmd("XMD5 f")
        assert f"250 {hashlib.sha1(data).hexdigest()}" == ftp.sendcmd("XSHA1 f")
        assert f"250 {hashlib.sha256(data).hexdigest()}" == ftp.sendcmd("XSHA256 f")

    def test_hash_of_a_directory_is_refused(self, ftp: ftplib.FTP) -> None:
        """A directory has no checksum."""
        ftp.mkd("d")
        assert "550" == _code(ftp.sendcmd, "HASH d")


class TestFeatures:
    def test_feat_lists_exactly_what_works(self, ftp: ftplib.FTP) -> None:
        """FEAT names each extension served, and EPRT only when active mode is allowed."""
        lines = ftp.sendcmd("FEAT").splitlines()[1:-1]
        features = {line.strip().split(" ")[0] for line in lines}
        assert {"AUTH", "PBSZ", "PROT", "EPSV", "HOST", "MDTM", "MFMT", "SIZE", "REST", "TVFS", "UTF8", "AVBL",
                "XCRC", "XMD5", "XSHA1", "XSHA256", "MLST", "HASH"} == features

    def test_opts_utf8_and_utf8_names(self, ftp: ftplib.FTP) -> None:
        """Names are UTF-8 both ways."""
        assert ftp.sendcmd("OPTS UTF8 ON").startswith("200")
        _put(ftp, "résumé-日本.txt", b"x")
        assert ["résumé-日本.txt"] == ftp.nlst()

    def test_avbl_reports_the_quota_remainder(self, server: Daemon) -> None:
        """AVBL is the quota minus what the user stores."""
        name = new_user(server, "quota", "pw", None, "--quota-bytes", "10000")
        client = ftp_login(server, name, "pw")
        _put(client, "f", b"x" * 3000)
        assert "213 7000" == client.sendcmd("AVBL")
        assert "550" == _code(client.sendcmd, "AVBL f")
        client.quit()

    def test_quota_exceeded_is_552_and_nothing_is_stored(self, server: Daemon) -> None:
        """An upload past the byte quota fails with 552 and leaves no file."""
        name = new_user(server, "quota", "pw", None, "--quota-bytes", "1000000")
        client = ftp_login(server, name, "pw")
        assert "552" == _code(_put, client, "big", os.urandom(3 * 1024 * 1024))
        assert [] == client.nlst()
        server.wait_event("fs.upload", user=name, path="/big", outcome="incomplete")
        client.quit()

    def test_epsv_and_pasv(self, ftp: ftplib.FTP, server: Daemon) -> None:
        """Both passive forms hand out ports of the configured range, on the address the client used."""
        low, high = server.passive_ports
        host, port = ftplib.parse227(ftp.sendcmd("PASV"))
        assert "127.0.0.1" == host and low <= port <= high
        port = ftplib.parse229(ftp.sendcmd("EPSV"), ("127.0.0.1", 0))[1]
        assert low <= port <= high

    def test_tls_is_reported_in_the_session(self, server: Daemon, user: str) -> None:
        """A login over TLS is recorded with protocol ftps."""
        client = ftp_login(server, user, mode="explicit")
        client.quit()
        server.wait_event("auth.login", user=user, outcome="ok", protocol="ftps")


class TestErrors:
    @pytest.mark.parametrize("command", ["LIST missing", "NLST missing", "MLST missing", "STAT missing",
                                         "MDTM missing", "MFMT 20200101000000 missing", "XCRC missing",
                                         "RETR missing", "SIZE missing", "AVBL missing", "DELE missing",
                                         "RMD missing", "CWD missing", "SITE CHMOD 600 missing"])
    def test_a_missing_path_is_550(self, ftp: ftplib.FTP, command: str) -> None:
        """Every command on a path that does not exist answers 550 with the VirtualFS's reason."""
        if command.split()[0] in ("LIST", "NLST", "RETR"):
            ftp.sendcmd("TYPE I")
            ftp.makepasv()
        with pytest.raises(ftplib.error_perm) as info:
            ftp.sendcmd(command)
        assert str(info.value).startswith("550")
        assert "No such file or directory" in str(info.value)

    def test_stor_into_a_missing_directory_is_550(self, ftp: ftplib.FTP) -> None:
        """A STOR whose parent directory does not exist is refused before any data is sent."""
        assert "550" == _code(_put, ftp, "no/such/dir/f", b"x")

    def test_bad_names_are_553(self, ftp: ftplib.FTP) -> None:
        """A name over 255 bytes cannot be stored (553, the reply for a file name not allowed)."""
        assert "553" == _code(_put, ftp, "n" * 300, b"x")

    def test_quota_exceeded_at_commit_is_552(self, server: Daemon) -> None:
        """A small upload over the byte quota fails when it commits: 552, and nothing is stored."""
        name = new_user(server, "quota", "pw", None, "--quota-bytes", "1000")
        client = ftp_login(server, name, "pw")
        assert "552" == _code(_put, client, "f", os.urandom(5000))
        assert [] == client.nlst()
        client.quit()
