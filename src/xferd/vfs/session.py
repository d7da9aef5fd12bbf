"""A Session: who is asking, over which protocol, from where. Every VirtualFS call takes one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import structlog

from xferd.metadata.models import Quota, Tenant, User
from xferd.vfs.policy import Policy


@dataclass
class Session:
    user: User
    policy: Policy
    protocol: str
    remote: str
    root_ino: int
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    log: Any = None  # a structlog logger bound to this session's fields

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = structlog.get_logger("xferd.audit").bind(**self.fields)

    @property
    def tenant(self) -> Tenant:
        return self.user.tenant

    @property
    def quota(self) -> Quota:
        return Quota(self.user.quota_bytes, self.user.quota_files)

    @property
    def fields(self) -> dict[str, str]:
        return {"tenant": self.user.tenant.name, "user": self.user.name, "protocol": self.protocol,
                "remote": self.remote, "session": self.id}
