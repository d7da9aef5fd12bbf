"""Shared pieces for the unit tests: a real SQLite store and a real local blob store in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from xferd.config import Config, default_config
from xferd.daemon import open_metadata, open_storage
from xferd.metadata.database import SqliteDatabase
from xferd.metadata.models import Perm, Quota
from xferd.metadata.sql import SqlMetadataStore
from xferd.storage.local import LocalBlobStore
from xferd.vfs.audit import AuditSink
from xferd.vfs.filesystem import VirtualFS
from xferd.vfs.session import Session

from .support import OWNER

MakeSession = Callable[..., Awaitable[Session]]


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event of the test, captured (request it before the stores to see theirs too)."""
    with capture_logs() as entries:
        yield entries


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # fsync off: the tests check what is written, not that the disk honours it, and fsync is slow here.
    return default_config(tmp_path / "data", storage={"fsync": False}, metadata={"sqlite_synchronous": "normal"})


@pytest.fixture
async def md(config: Config) -> AsyncIterator[SqlMetadataStore]:
    store = open_metadata(config)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def storage(config: Config) -> AsyncIterator[LocalBlobStore]:
    store = open_storage(config)
    yield store
    await store.close()


@pytest.fixture
async def audit(md: SqlMetadataStore) -> AsyncIterator[AuditSink]:
    sink = AuditSink(md)
    yield sink
    await sink.close()


@pytest.fixture(params=["loop", "threads"])
def commit_site(request: pytest.FixtureRequest, md: SqlMetadataStore, storage: LocalBlobStore) -> str:
    """Where small commits and short metadata writes run, pinned, so that every VirtualFS test runs
    both ways: on the event loop (as on fast storage) and in the blob lanes and the database thread
    (as on slow storage). Without the pin, the running averages would decide during the test."""
    limit = float("inf") if request.param == "loop" else 0.0
    db = md.db
    assert isinstance(db, SqliteDatabase)
    for budget in (storage.commit_budget, db.write_budget):
        budget.limit, budget.average = limit, 0.0
    return str(request.param)


@pytest.fixture
def vfs(md: SqlMetadataStore, storage: LocalBlobStore, audit: AuditSink, config: Config,
        commit_site: str) -> VirtualFS:
    return VirtualFS(md, storage, audit, OWNER, config.transfer)


@pytest.fixture
def make_session(md: SqlMetadataStore, vfs: VirtualFS) -> MakeSession:
    """Create a user (no password) and open a session for them: ``await make_session("alice")``."""

    async def make(name: str, home: str | None = None, perms: Perm | None = None, quota: Quota | None = None,
                   tenant: str = "default", protocol: str = "test") -> Session:
        await md.create_user(tenant, name, None, home or f"/{name}", Perm.all() if perms is None else perms,
                             quota or Quota())
        login = await md.load_login(tenant, name)
        assert login is not None
        return await vfs.open_session(login, protocol, "127.0.0.1")

    return make


@pytest.fixture
async def alice(make_session: MakeSession) -> Session:
    return await make_session("alice")
