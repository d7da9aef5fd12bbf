"""xferd.auth: argon2id passwords, SSH public keys, and the audited login decision."""

from __future__ import annotations

from typing import Any

import asyncssh
import pytest

from xferd.auth import (
    DEFAULT_TENANT,
    Authenticator,
    hash_password,
    parse_public_key,
    split_login_name,
    verify_password,
)
from xferd.metadata.models import Perm, Quota
from xferd.metadata.sql import SqlMetadataStore
from xferd.vfs.audit import AuditSink

from .support import events

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def stored_hash() -> str:
    """One argon2id hash for the module: each costs about half a second."""
    return hash_password(PASSWORD)


@pytest.fixture(scope="module")
def ssh_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
async def authenticator(logs: list[dict[str, Any]], md: SqlMetadataStore, audit: AuditSink,
                        stored_hash: str, ssh_key: asyncssh.SSHKey) -> Authenticator:
    key = parse_public_key(ssh_key.export_public_key().decode())
    await md.create_user(DEFAULT_TENANT, "alice", stored_hash, "/alice", Perm.all(), Quota(), [key])
    await md.create_user("acme", "bob", stored_hash, "/bob", Perm.all(), Quota())
    return Authenticator(md, audit)


class TestPasswords:
    def test_hash_is_argon2id(self, stored_hash: str) -> None:
        """Passwords are stored as argon2id PHC strings."""
        assert stored_hash.startswith("$argon2id$v=19$")

    def test_hash_is_salted(self, stored_hash: str) -> None:
        """Hashing the same password twice gives two different strings."""
        assert stored_hash != hash_password(PASSWORD)

    def test_verify_right_password(self, stored_hash: str) -> None:
        """The right password verifies."""
        assert True is verify_password(stored_hash, PASSWORD)

    def test_verify_wrong_password(self, stored_hash: str) -> None:
        """A wrong password does not."""
        assert False is verify_password(stored_hash, PASSWORD + "!")

    def test_no_stored_hash_never_verifies(self) -> None:
        """A user without a password cannot log in with one (the dummy hash still costs the work)."""
        assert False is verify_password(None, "xferd: a password nobody has")

    def test_corrupt_hash_does_not_verify(self) -> None:
        """A stored value that is not an argon2 hash refuses instead of raising."""
        assert False is verify_password("not-a-hash", PASSWORD)


class TestPublicKeys:
    def test_parse(self, ssh_key: asyncssh.SSHKey) -> None:
        """An OpenSSH line gives the type, the key without its comment, the comment and the SHA256 fingerprint."""
        line = ssh_key.export_public_key().decode().strip()
        key = parse_public_key(line + " alice@laptop\n")
        assert ("ssh-ed25519", line, "alice@laptop", ssh_key.get_fingerprint("sha256")) == (
            key.key_type, key.key_data, key.comment, key.fingerprint)

    def test_comment_may_contain_spaces(self, ssh_key: asyncssh.SSHKey) -> None:
        """Everything after the key is the comment."""
        line = ssh_key.export_public_key().decode().strip()
        assert "my work key" == parse_public_key(f"{line} my work key").comment

    def test_rsa(self) -> None:
        """Other key types parse too."""
        key = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
        assert "ssh-rsa" == parse_public_key(key.export_public_key().decode()).key_type

    @pytest.mark.parametrize("text", ["", "garbage", "ssh-ed25519", "ssh-ed25519 AAAA", "ssh-ed25519 !!!not-base64",
                                      "-----BEGIN OPENSSH PRIVATE KEY-----"])
    def test_garbage_is_refused(self, text: str) -> None:
        """Anything that is not a public key is a ValueError."""
        with pytest.raises(ValueError, match="not an OpenSSH public key"):
            parse_public_key(text)


class TestSplitLoginName:
    @pytest.mark.parametrize(("username", "expected"), [
        ("alice", (DEFAULT_TENANT, "alice")),
        ("alice@acme", ("acme", "alice")),
        ("alice@example.com@acme", ("acme", "alice@example.com")),
        ("alice@", (DEFAULT_TENANT, "alice@")),
        ("@acme", (DEFAULT_TENANT, "@acme")),
    ])
    def test_split(self, username: str, expected: tuple[str, str]) -> None:
        """'name@tenant' names a tenant (the last '@' splits); anything else is the default tenant."""
        assert expected == split_login_name(username)


class TestAuthenticator:
    async def test_password_ok(self, authenticator: Authenticator, logs: list[dict[str, Any]]) -> None:
        """The right password returns the login and audits outcome ok."""
        login = await authenticator.password("alice", PASSWORD, "sftp", "10.0.0.1")
        assert login is not None
        assert ("alice", "default") == (login.user.name, login.user.tenant.name)
        assert [("ok", "password", "alice", "default", "sftp", "10.0.0.1")] == [
            (e["outcome"], e["method"], e["user"], e["tenant"], e["protocol"], e["remote"])
            for e in events(logs, "auth.login")]

    async def test_tenant_from_login_name(self, authenticator: Authenticator) -> None:
        """bob@acme logs in as bob of tenant acme; plain bob is unknown in the default tenant."""
        login = await authenticator.password("bob@acme", PASSWORD, "sftp", "10.0.0.1")
        assert login is not None
        assert "acme" == login.user.tenant.name
        assert None is await authenticator.password("bob", PASSWORD, "sftp", "10.0.0.1")

    async def test_wrong_password(self, authenticator: Authenticator, logs: list[dict[str, Any]]) -> None:
        """A wrong password returns None and audits bad_credentials."""
        assert None is await authenticator.password("alice", "nope", "sftp", "10.0.0.1")
        assert ["bad_credentials"] == [e["outcome"] for e in events(logs, "auth.login")]

    async def test_unknown_user(self, authenticator: Authenticator, logs: list[dict[str, Any]]) -> None:
        """An unknown user returns None and audits unknown_user (at warning level)."""
        assert None is await authenticator.password("mallory", PASSWORD, "sftp", "10.0.0.1")
        assert [("unknown_user", "mallory", "warning")] == [
            (e["outcome"], e["user"], e["log_level"]) for e in events(logs, "auth.login")]

    async def test_disabled_user_is_refused(self, authenticator: Authenticator, md: SqlMetadataStore,
                                            logs: list[dict[str, Any]]) -> None:
        """A disabled user is refused even with the right password; the audit says why."""
        await md.set_disabled(DEFAULT_TENANT, "alice", True)
        assert None is await authenticator.password("alice", PASSWORD, "sftp", "10.0.0.1")
        assert ["disabled"] == [e["outcome"] for e in events(logs, "auth.login")]

    async def test_login_is_durable(self, authenticator: Authenticator, md: SqlMetadataStore,
                                    audit: AuditSink) -> None:
        """Every login attempt is also kept in the audit table."""
        await authenticator.public_key("mallory@acme", "ssh-ed25519 AAAA", "sftp", "10.0.0.9")
        await audit.flush()
        assert [("acme", "mallory", "auth.login", "unknown_user", "method=publickey")] == [
            (e.tenant, e.user, e.event, e.outcome, e.detail) for e in await md.audit_events()]

    async def test_public_key_ok(self, authenticator: Authenticator, ssh_key: asyncssh.SSHKey,
                                 logs: list[dict[str, Any]]) -> None:
        """A key the user has logs them in."""
        key_data = ssh_key.export_public_key().decode().strip()
        login = await authenticator.public_key("alice", key_data, "sftp", "10.0.0.1")
        assert login is not None
        assert [("ok", "publickey")] == [(e["outcome"], e["method"]) for e in events(logs, "auth.login")]

    async def test_other_public_key_is_refused(self, authenticator: Authenticator,
                                               logs: list[dict[str, Any]]) -> None:
        """A key the user does not have is refused."""
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
        assert None is await authenticator.public_key("alice", other, "sftp", "10.0.0.1")
        assert ["bad_credentials"] == [e["outcome"] for e in events(logs, "auth.login")]

    async def test_key_probe_is_not_audited(self, authenticator: Authenticator, ssh_key: asyncssh.SSHKey,
                                            md: SqlMetadataStore, logs: list[dict[str, Any]]) -> None:
        """A key probe (final=False) is answered without an audit event, and a disabled user's key would not do."""
        key_data = ssh_key.export_public_key().decode().strip()
        first = await authenticator.public_key("alice", key_data, "sftp", "10.0.0.1", final=False)
        await md.set_disabled(DEFAULT_TENANT, "alice", True)
        second = await authenticator.public_key("alice", key_data, "sftp", "10.0.0.1", final=False)
        assert (True, None, []) == (first is not None, second, events(logs, "auth.login"))
