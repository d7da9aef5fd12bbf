"""Basic authentication for WebDAV, with verified passwords remembered for a while.

WebDAV clients send the password with every request, and an argon2id check costs about 50 ms, so
a verified (user, password, client address) is trusted for ``auth_cache_seconds``. The cache is
shared by the event-loop listener (:mod:`.loopfront`, which awaits :meth:`Logins.verify`) and the
worker threads (which reach it through the bridge); either fills it for the other.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time

from xferd.auth import Authenticator
from xferd.config import WebdavConfig
from xferd.vfs.filesystem import VirtualFS
from xferd.vfs.session import Session

CACHE_MAX = 10_000

Credentials = tuple[str, str]  # user name, password


def basic_credentials(header: str) -> Credentials | None:
    """User name and password of a ``Basic`` Authorization header, or None if it is not one."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    if not sep or not username:
        return None
    return username, password


class Logins:
    def __init__(self, config: WebdavConfig, auth: Authenticator, vfs: VirtualFS) -> None:
        self.seconds = config.auth_cache_seconds
        self.auth = auth
        self.vfs = vfs
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, bytes, str], tuple[Session, float]] = {}

    def cached(self, credentials: Credentials, remote: str) -> Session | None:
        """The session of credentials verified lately from this address (from any thread)."""
        key = _key(credentials, remote)
        with self._lock:
            hit = self._cache.get(key)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    async def login(self, credentials: Credentials, remote: str) -> Session | None:
        """On the loop: the cached session, or :meth:`verify`."""
        return self.cached(credentials, remote) or await self.verify(credentials, remote)

    async def verify(self, credentials: Credentials, remote: str) -> Session | None:
        """Check the password (on the loop; audited by the authenticator) and open a session."""
        username, password = credentials
        login = await self.auth.password(username, password, "webdav", remote)
        if login is None:
            return None
        session = await self.vfs.open_session(login, "webdav", remote)
        if self.seconds > 0:
            self._remember(_key(credentials, remote), session)
        return session

    def _remember(self, key: tuple[str, bytes, str], session: Session) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
            self._cache[key] = (session, now + self.seconds)


def _key(credentials: Credentials, remote: str) -> tuple[str, bytes, str]:
    return credentials[0], hashlib.sha256(credentials[1].encode()).digest(), remote
