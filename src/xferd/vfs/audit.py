"""Audit events: one structured log line for every operation, and a durable row for every change.

Each event is logged at once through the session's bound logger (so it carries tenant, user,
protocol, remote address and session id). Events that change something, and every login, are also
kept in the metadata store's audit table; they are written in batches, about once a second, so an
upload of a small file does not pay for an extra transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

import structlog

from xferd.metadata.models import AuditEvent

log = structlog.get_logger("xferd.audit")


class AuditStore(Protocol):
    async def record_audit(self, events: list[AuditEvent]) -> None: ...


class AuditSink:
    def __init__(self, store: AuditStore, flush_interval: float = 1.0) -> None:
        self._store = store
        self._interval = flush_interval
        self._queue: list[AuditEvent] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="xferd-audit")

    def emit(self, logger: Any, fields: dict[str, str], event: str, path: str, outcome: str,
             durable: bool, **extra: Any) -> None:
        # A failed change is worth a warning; a failed lookup is routine (clients probe before
        # uploading), so it stays at info.
        if outcome == "ok" or not durable:
            logger.info(event, path=path, outcome=outcome, **extra)
        else:
            logger.warning(event, path=path, outcome=outcome, **extra)
        if durable:
            detail = " ".join(f"{k}={v}" for k, v in extra.items())
            self._queue.append(AuditEvent(time.time(), fields.get("tenant", ""), fields.get("user", ""),
                                          fields.get("protocol", ""), fields.get("remote", ""), event, path,
                                          outcome, detail))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        try:
            await self._store.record_audit(batch)
        except Exception as exc:  # the audit table must not take the server down; the log has the events
            log.error("audit.flush_failed", error=str(exc), events=len(batch))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
