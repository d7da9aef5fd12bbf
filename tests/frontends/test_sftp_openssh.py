"""The OpenSSH sftp client, in batch mode, against a real daemon.

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from tests.support import PASSWORD, Daemon, new_user, require_tool, sftp_batch, ssh_options


def _random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


class TestOpenSSHSftp:
    def test_put_get_round_trip(self, server: Daemon, user: str, client_key: Path, tmp_path: Path) -> None:
        """A file put with sftp comes back byte for byte."""
        src = _random_file(tmp_path / "src.bin", 3_000_001)
        sftp_batch(server, client_key, f"put {src} up.bin\nget up.bin {tmp_path / 'back.bin'}", user)
        assert src.read_bytes() == (tmp_path / "back.bin").read_bytes()

    def test_recursive_put_and_get(self, server: Daemon, user: str, client_key: Path, tmp_path: Path) -> None:
        """put -r and get -r copy a tree with empty files and nested directories exactly."""
        tree = tmp_path / "tree"
        (tree / "sub" / "deeper").mkdir(parents=True)
        _random_file(tree / "a.bin", 100_000)
        _random_file(tree / "sub" / "b.bin", 5)
        (tree / "sub" / "deeper" / "empty").write_bytes(b"")
        sftp_batch(server, client_key, f"put -r {tree}\nget -r tree {tmp_path / 'back'}", user)
        for path in tree.rglob("*"):
            twin = tmp_path / "back" / path.relative_to(tree)
            assert twin.exists(), twin
            if path.is_file():
                assert path.read_bytes() == twin.read_bytes()

    def test_directory_and_link_commands(self, server: Daemon, user: str, client_key: Path, tmp_path: Path) -> None:
        """mkdir, rename, chmod, symlink, ls, rm and rmdir behave as on a POSIX server."""
        src = _random_file(tmp_path / "f", 1000)
        out = sftp_batch(server, client_key, f"""
mkdir d1
put {src} d1/f1
rename d1/f1 d1/f2
chmod 600 d1/f2
symlink d1/f2 lnk
ls -l d1
ls -l
""", user).stdout
        assert "-rw-------" in out and "d1/f2" in out
        assert "lrwxrwxrwx" in out and "lnk" in out
        out = sftp_batch(server, client_key, "rm lnk\nrm d1/f2\nrmdir d1\nls -1", user).stdout
        assert "d1" not in out.split("ls -1", 1)[1]

    def test_df_reports_the_quota(self, server: Daemon, client_key: Path) -> None:
        """df shows the user's quota as the size of their filesystem."""
        name = new_user(server, "quota", None, client_key.with_suffix(".pub"), "--quota-bytes", str(10 * 1024 ** 3))
        out = sftp_batch(server, client_key, "df -h", name).stdout
        assert "10.0GB" in out

    def test_reget_and_reput_resume(self, server: Daemon, user: str, client_key: Path, tmp_path: Path) -> None:
        """reput appends the missing tail to a partial upload; reget resumes a partial download."""
        src = _random_file(tmp_path / "src.bin", 2_000_000)
        head = tmp_path / "head.bin"
        head.write_bytes(src.read_bytes()[:700_000])
        sftp_batch(server, client_key, f"put {head} f.bin", user)
        sftp_batch(server, client_key, f"reput {src} f.bin", user)
        partial = tmp_path / "partial.bin"
        partial.write_bytes(src.read_bytes()[:1_234_567])
        sftp_batch(server, client_key, f"reget f.bin {partial}", user)
        assert partial.read_bytes() == src.read_bytes()


class TestOpenSSHScp:
    def _scp(self, daemon: Daemon, key: Path, *args: str) -> None:
        require_tool("scp")
        result = subprocess.run(["scp", "-q", "-i", str(key), *ssh_options(daemon.port), *args],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr

    def test_scp_overwrite_replaces_a_longer_file(self, server: Daemon, user: str, client_key: Path,
                                                  tmp_path: Path) -> None:
        """scp (SFTP mode) over a longer file leaves exactly the new, shorter content."""
        long, short = _random_file(tmp_path / "long", 1_000_000), _random_file(tmp_path / "short", 300_000)
        target = f"{user}@127.0.0.1:f.bin"
        self._scp(server, client_key, str(long), target)
        self._scp(server, client_key, str(short), target)
        self._scp(server, client_key, target, str(tmp_path / "back"))
        assert (tmp_path / "back").read_bytes() == short.read_bytes()

    def test_scp_recursive(self, server: Daemon, user: str, client_key: Path, tmp_path: Path) -> None:
        """scp -r copies a tree up and back."""
        tree = tmp_path / "t"
        (tree / "in").mkdir(parents=True)
        _random_file(tree / "in" / "x", 70_000)
        self._scp(server, client_key, "-r", str(tree), f"{user}@127.0.0.1:")
        self._scp(server, client_key, "-r", f"{user}@127.0.0.1:t", str(tmp_path / "back"))
        assert (tmp_path / "back" / "in" / "x").read_bytes() == (tree / "in" / "x").read_bytes()


class TestOpenSSHPasswordLogin:
    def test_password_login(self, server: Daemon, user: str, tmp_path: Path) -> None:
        """The sftp binary logs in with a password (given through SSH_ASKPASS) and transfers a file."""
        require_tool("sftp")
        askpass = tmp_path / "askpass"
        askpass.write_text(f"#!/bin/sh\necho '{PASSWORD}'\n")
        askpass.chmod(0o700)
        src = _random_file(tmp_path / "p.bin", 123_457)
        env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
        options = ssh_options(server.port)
        at = options.index("BatchMode=yes")
        del options[at - 1:at + 1]  # batch mode forbids asking for a password
        result = subprocess.run(
            ["sftp", *options, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
             f"{user}@127.0.0.1"],
            input=f"put {src} p.bin\nget p.bin {tmp_path / 'back.bin'}\nbye\n", capture_output=True, text=True,
            env=env, timeout=120, start_new_session=True)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        server.wait_event("auth.login", user=user, method="password", outcome="ok")


class TestChecksumCommands:
    def _ssh(self, daemon: Daemon, user: str, key: Path, command: str) -> subprocess.CompletedProcess[str]:
        require_tool("ssh")
        options = ["-p" if o == "-P" else o for o in ssh_options(daemon.port)]
        return subprocess.run(["ssh", "-i", str(key), *options, f"{user}@127.0.0.1", command],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    def test_md5sum_and_sha256sum_answer_from_stored_sums(self, server: Daemon, user: str, client_key: Path,
                                                          tmp_path: Path) -> None:
        """md5sum and sha256sum over exec print coreutils-style lines for the uploaded bytes."""
        src = _random_file(tmp_path / "f", 200_001)
        sftp_batch(server, client_key, f"mkdir 'a dir'\nput {src} 'a dir/f'", user)
        for tool, algorithm in (("md5sum", "md5"), ("sha256sum", "sha256"), ("sha1sum", "sha1")):
            result = self._ssh(server, user, client_key, f"{tool} a\\ dir/f")
            assert result.returncode == 0, result.stderr
            assert result.stdout == f"{hashlib.new(algorithm, src.read_bytes()).hexdigest()}  a dir/f\n"

    def test_missing_file_and_probe(self, server: Daemon, user: str, client_key: Path) -> None:
        """A missing path exits 1 with an error; no path hashes the (empty) input, as rclone's probe expects."""
        missing = self._ssh(server, user, client_key, "md5sum nope")
        assert missing.returncode == 1
        assert "nope" in missing.stderr
        probe = self._ssh(server, user, client_key, "md5sum")
        assert probe.stdout == f"{hashlib.md5(b'').hexdigest()}  -\n"

    def test_other_commands_are_refused(self, server: Daemon, user: str, client_key: Path) -> None:
        """Anything else, a shell included, is refused."""
        for command in ("ls", "sh -c id", "md5sum --help", "cat /etc/passwd"):
            result = self._ssh(server, user, client_key, command)
            assert result.returncode != 0, command
            assert result.stdout == "", command
