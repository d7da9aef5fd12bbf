"""Who may do what where: grants resolved by the most specific path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xferd.metadata.models import Grant, Perm


def _covers(prefix: str, path: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Policy:
    """A user's grants. The grants at the longest path covering a path decide (a user's and their
    groups' grants at the same path add up); a path no grant covers allows nothing."""

    grants: tuple[Grant, ...]

    @classmethod
    def of(cls, grants: Iterable[Grant]) -> Policy:
        return cls(tuple(sorted(grants, key=lambda g: len(g.path), reverse=True)))

    def perms(self, path: str) -> Perm:
        best_len = -1
        perms = Perm(0)
        for grant in self.grants:
            if len(grant.path) < best_len:
                break
            if _covers(grant.path, path):
                best_len = len(grant.path)
                perms |= grant.perms
        return perms

    def allows(self, path: str, perm: Perm) -> bool:
        return perm in self.perms(path)

    def has_rules_below(self, path: str) -> bool:
        """Whether a grant applies strictly inside ``path`` (moving ``path`` would move the rule's scope)."""
        return any(g.path != path and _covers(path, g.path) for g in self.grants)
