"""xferd.logging: how log lines reach the stream."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from xferd.config import LogConfig
from xferd.logging import configure


class _Recorder(io.StringIO):
    """A stream that keeps each write() call apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def restored() -> Iterator[None]:
    asyncssh_level = logging.getLogger("asyncssh").level
    yield
    structlog.reset_defaults()
    logging.getLogger("asyncssh").setLevel(asyncssh_level)


class TestConfigure:
    def test_an_event_is_one_write_of_a_whole_line(self, restored: None) -> None:
        """Each event reaches the stream as one write of its whole line, newline included: the
        standard library's handler (asyncssh, pyftpdlib, cheroot) writes to the same stream from
        other threads, and a line written in two parts could be split by one of its lines, which
        would make the JSON unreadable."""
        out = _Recorder()
        configure(LogConfig(level="info", format="json"), out)
        structlog.get_logger("t").warning("ftp.too_many_connections", remote="192.0.2.1")
        assert 1 == len(out.writes)
        record = json.loads(out.writes[0])
        assert (True, "ftp.too_many_connections", "warning", "192.0.2.1") == (
            out.writes[0].endswith("\n"), record["event"], record["level"], record["remote"])

    def test_events_below_the_level_are_dropped(self, restored: None) -> None:
        """With level "warning", info events write nothing."""
        out = _Recorder()
        configure(LogConfig(level="warning", format="json"), out)
        structlog.get_logger("t").info("fs.stat", path="/a")
        assert [] == out.writes
