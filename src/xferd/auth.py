"""Logins, for every frontend: passwords (argon2id) and SSH public keys.

A refused login never says why to the client; the audit event does. An unknown user costs the same
argon2 work as a known one, so response times do not reveal which names exist.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from xferd.metadata.base import Accounts
from xferd.metadata.models import Login, PublicKey
from xferd.vfs.audit import AuditSink

log = structlog.get_logger("xferd.auth")

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("xferd: a password nobody has")
DEFAULT_TENANT = "default"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def parse_public_key(text: str) -> PublicKey:
    """An OpenSSH public key line (``ssh-ed25519 AAAA... comment``); raises ValueError if it is not one."""
    import asyncssh

    line = text.strip()
    try:
        key = asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not an OpenSSH public key: {exc}") from None
    data = key.export_public_key("openssh").decode().strip()
    fields = line.split(None, 2)
    comment = fields[2] if len(fields) > 2 else ""
    blob = base64.b64decode(data.split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return PublicKey(0, key.get_algorithm(), data.split(None, 2)[0] + " " + data.split()[1], fingerprint, comment)


def split_login_name(username: str) -> tuple[str, str]:
    """``alice`` is alice in the default tenant; ``alice@acme`` is alice in tenant acme."""
    if "@" in username:
        name, _, tenant = username.rpartition("@")
        if name and tenant:
            return tenant, name
    return DEFAULT_TENANT, username


class Authenticator:
    def __init__(self, metadata: Accounts, audit: AuditSink) -> None:
        self.md = metadata
        self.audit = audit

    async def _load(self, username: str) -> Login | None:
        tenant, name = split_login_name(username)
        return await self.md.load_login(tenant, name)

    async def password(self, username: str, password: str, protocol: str, remote: str) -> Login | None:
        login = await self._load(username)
        stored = login.user.password_hash if login is not None else None
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, verify_password, stored, password)
        return self._decide(login, ok, username, "password", protocol, remote)

    async def public_key(self, username: str, key_data: str, protocol: str, remote: str,
                         final: bool = True) -> Login | None:
        """Whether ``key_data`` (OpenSSH form, no comment) is one of the user's keys. With ``final``
        false (the client only asks whether a key would do) nothing is audited."""
        login = await self._load(username)
        ok = login is not None and any(k.key_data == key_data for k in login.keys)
        if not final:
            return login if ok and login is not None and not login.user.disabled else None
        return self._decide(login, ok, username, "publickey", protocol, remote)

    def _decide(self, login: Login | None, ok: bool, username: str, method: str, protocol: str,
                remote: str) -> Login | None:
        reason = "ok"
        if login is None:
            reason = "unknown_user"
        elif not ok:
            reason = "bad_credentials"
        elif login.user.disabled:
            reason = "disabled"
        self.record(username, reason, method, protocol, remote)
        return login if reason == "ok" else None

    def record(self, username: str, outcome: str, method: str, protocol: str, remote: str) -> None:
        """Audit one login decision (``ok``, ``bad_credentials``, ``unknown_user``, ``disabled``)."""
        tenant, name = split_login_name(username)
        fields = {"tenant": tenant, "user": name, "protocol": protocol, "remote": remote}
        self.audit.emit(log.bind(**fields), fields, "auth.login", "", outcome, True, method=method)
