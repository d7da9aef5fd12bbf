"""xferd.vfs.paths: client paths validated, normalized and confined to a root."""

from __future__ import annotations

import errno

import pytest

from xferd.errors import InvalidPath
from xferd.vfs import paths


class TestSplit:
    @pytest.mark.parametrize(("path", "expected"), [
        ("", ()),
        ("/", ()),
        (".", ()),
        ("a", ("a",)),
        ("/a/b", ("a", "b")),
        ("a//b///c/", ("a", "b", "c")),
        ("./a/./b/.", ("a", "b")),
        ("a/b/../c", ("a", "c")),
        (b"/a/b", ("a", "b")),
        ("/caf\u00e9/\u65e5\u672c", ("caf\u00e9", "\u65e5\u672c")),
    ])
    def test_normalizes(self, path: str | bytes, expected: tuple[str, ...]) -> None:
        """Empty and '.' components vanish, '..' removes the previous one, str and bytes agree."""
        assert expected == paths.split(path)

    @pytest.mark.parametrize("path", [
        "..", "../..", "/..", "/../..", "../../etc/passwd", "/../etc/passwd", "a/../../etc/passwd",
        "a/b/../../../etc/passwd", "./../etc/passwd", "//..//..//etc/passwd", "../a/../../etc/passwd",
        "a/../b/../../etc/passwd", b"../../etc/passwd", "/" + "../" * 100 + "etc/passwd",
    ])
    def test_dotdot_never_escapes(self, path: str | bytes) -> None:
        """No spelling of '..' climbs above the root: the path stays inside it."""
        parts = paths.split(path)
        assert ".." not in parts
        assert parts in ((), ("etc", "passwd"))

    def test_dotdot_stops_at_root_then_descends(self) -> None:
        """'..' at the root is the root, so '/../a/b' is '/a/b'."""
        assert ("a", "b") == paths.split("/../a/../../a/b")

    @pytest.mark.parametrize("path", ["%2e%2e", "%2e%2e/%2e%2e/etc", "..%2f..", "...", "..."])
    def test_encoded_dots_are_literal_names(self, path: str) -> None:
        """Percent-encoding is not decoded: '%2e%2e' is a file called '%2e%2e', '...' a file called '...'."""
        assert tuple(path.split("/")) == paths.split(path)

    @pytest.mark.parametrize("path", ["a\x00b", "/a/\x00", b"a\x00/b", "\x00"])
    def test_nul_byte_is_invalid(self, path: str | bytes) -> None:
        """A NUL byte anywhere is EINVAL."""
        with pytest.raises(InvalidPath) as info:
            paths.split(path)
        assert errno.EINVAL == info.value.errno

    @pytest.mark.parametrize("path", ["a/" * 2049, b"a/" * 2049, "\u00e9" * 2049, "/".join(["x" * 200] * 21)])
    def test_path_over_4096_bytes_is_too_long(self, path: str | bytes) -> None:
        """A path over 4096 bytes (counted in UTF-8) is ENAMETOOLONG."""
        with pytest.raises(InvalidPath) as info:
            paths.split(path)
        assert errno.ENAMETOOLONG == info.value.errno

    def test_path_of_exactly_4096_bytes_is_accepted(self) -> None:
        """4096 bytes is the limit, not past it."""
        path = "/" + "/".join(["x" * 255] * 16)
        assert 4096 == len(path.encode())
        assert 16 == len(paths.split(path))

    @pytest.mark.parametrize("name", ["x" * 256, "\u00e9" * 128, "\u65e5" * 86])
    def test_component_over_255_bytes_is_too_long(self, name: str) -> None:
        """One name over 255 bytes in UTF-8 is ENAMETOOLONG, even when it has fewer characters."""
        with pytest.raises(InvalidPath) as info:
            paths.split("/dir/" + name)
        assert errno.ENAMETOOLONG == info.value.errno

    def test_component_of_255_bytes_is_accepted(self) -> None:
        """255 bytes is the longest name."""
        assert ("x" * 255,) == paths.split("x" * 255)

    @pytest.mark.parametrize("path", [b"\xff", b"/a/\xc3", b"\xc0\xaf", b"/ok/\xed\xa0\x80"])
    def test_invalid_utf8_is_eilseq(self, path: bytes) -> None:
        """Bytes that are not UTF-8 (overlong forms and surrogates included) are EILSEQ."""
        with pytest.raises(InvalidPath) as info:
            paths.split(path)
        assert errno.EILSEQ == info.value.errno

    @pytest.mark.parametrize("path", ["a\udcff", "/ok/\ud800x"])
    def test_lone_surrogates_are_eilseq(self, path: str) -> None:
        """A str carrying undecodable bytes (surrogateescape) is not a UTF-8 name: EILSEQ, like the bytes."""
        with pytest.raises(InvalidPath) as info:
            paths.split(path)
        assert errno.EILSEQ == info.value.errno

    def test_errors_are_oserrors(self) -> None:
        """InvalidPath is an OSError whose errno a frontend can map."""
        with pytest.raises(OSError) as info:
            paths.split("a\x00")
        assert (errno.EINVAL, "File name contains a NUL byte") == (info.value.errno, info.value.strerror)


class TestSplitTarget:
    @pytest.mark.parametrize("path", ["", "/", ".", "..", "/a/..", "a/b/../.."])
    def test_root_is_refused(self, path: str) -> None:
        """A path that names the root (or nothing) cannot be the target of a create, remove or rename."""
        with pytest.raises(InvalidPath) as info:
            paths.split_target(path)
        assert errno.EINVAL == info.value.errno

    def test_names_an_entry(self) -> None:
        """A path below the root comes back as its components."""
        assert ("a", "b") == paths.split_target("/a/./b/")


class TestToClientAndTenantPath:
    def test_to_client(self) -> None:
        """Components become an absolute client path; none is '/'."""
        assert ("/", "/a/b") == (paths.to_client(()), paths.to_client(("a", "b")))

    @pytest.mark.parametrize(("home", "parts", "expected"), [
        ("/", (), "/"),
        ("/", ("a",), "/a"),
        ("/alice", (), "/alice"),
        ("/alice", ("a", "b"), "/alice/a/b"),
        ("/alice/", ("a",), "/alice/a"),
    ])
    def test_tenant_path(self, home: str, parts: tuple[str, ...], expected: str) -> None:
        """A path below a home, as the tenant sees it (the form grants are written in)."""
        assert expected == paths.tenant_path(home, parts)

    def test_normalize_home(self) -> None:
        """A home is stored absolute and normalized, confined like any path."""
        assert ("/", "/a/b", "/etc") == (paths.normalize_home(""), paths.normalize_home("a//b/"),
                                         paths.normalize_home("/../etc"))


class TestCheckLinkTarget:
    @pytest.mark.parametrize("target", ["../x", "/abs/path", "a/../../b", "%2e%2e", "."])
    def test_stored_as_given(self, target: str) -> None:
        """A link target is kept exactly as the client wrote it (it is resolved when followed)."""
        assert target == paths.check_link_target(target)

    def test_bytes_are_decoded(self) -> None:
        """A bytes target is decoded from UTF-8."""
        assert "caf\u00e9" == paths.check_link_target("caf\u00e9".encode())

    @pytest.mark.parametrize(("target", "code"), [
        ("", errno.EINVAL),
        (b"", errno.EINVAL),
        ("a\x00b", errno.EINVAL),
        (b"\xff\xfe", errno.EILSEQ),
        ("x" * 4097, errno.ENAMETOOLONG),
    ])
    def test_invalid_targets(self, target: str | bytes, code: int) -> None:
        """Empty, NUL, non-UTF-8 and over-long targets are refused with the matching errno."""
        with pytest.raises(InvalidPath) as info:
            paths.check_link_target(target)
        assert code == info.value.errno
