"""xferd.vfs.policy: grants resolved by the most specific path."""

from __future__ import annotations

import pytest

from xferd.metadata.models import Grant, Perm
from xferd.vfs.policy import Policy

READ = Perm.LIST | Perm.DOWNLOAD


def user(path: str, perms: Perm) -> Grant:
    return Grant(path, perms, "user:alice")


def group(path: str, perms: Perm) -> Grant:
    return Grant(path, perms, "group:staff")


class TestPolicy:
    def test_no_grant_allows_nothing(self) -> None:
        """A user without grants may do nothing anywhere."""
        policy = Policy.of([])
        assert (Perm(0), False) == (policy.perms("/"), policy.allows("/a", Perm.LIST))

    def test_path_outside_every_grant_allows_nothing(self) -> None:
        """A grant on /alice says nothing about /bob or the root."""
        policy = Policy.of([user("/alice", Perm.all())])
        assert (Perm(0), Perm(0)) == (policy.perms("/bob"), policy.perms("/"))

    def test_grant_covers_its_subtree(self) -> None:
        """A grant applies to its path and everything below it."""
        policy = Policy.of([user("/alice", READ)])
        assert (READ, READ) == (policy.perms("/alice"), policy.perms("/alice/x/y/z"))

    def test_root_grant_covers_everything(self) -> None:
        """A grant on / covers the whole tenant."""
        policy = Policy.of([user("/", READ)])
        assert (READ, READ) == (policy.perms("/"), policy.perms("/any/where"))

    def test_longest_prefix_wins(self) -> None:
        """The deepest grant covering a path decides, even when it allows less."""
        policy = Policy.of([user("/", Perm.all()), user("/a", READ), user("/a/b", Perm.UPLOAD)])
        assert (Perm.all(), READ, Perm.UPLOAD, Perm.UPLOAD) == (
            policy.perms("/x"), policy.perms("/a/x"), policy.perms("/a/b"), policy.perms("/a/b/c"))

    def test_order_of_grants_does_not_matter(self) -> None:
        """The result depends on the grants, not on the order they were loaded in."""
        grants = [user("/a/b", Perm.UPLOAD), user("/", Perm.all()), user("/a", READ)]
        assert Policy.of(grants).perms("/a/b/c") == Policy.of(reversed(grants)).perms("/a/b/c")

    def test_deeper_empty_grant_takes_away(self) -> None:
        """A deeper grant with no permissions hides a subtree from a broader grant."""
        policy = Policy.of([user("/", Perm.all()), user("/private", Perm(0))])
        assert (Perm(0), Perm.all()) == (policy.perms("/private/f"), policy.perms("/public"))

    @pytest.mark.parametrize("path", ["/ab", "/abc/d", "/a-b", "/a.b"])
    def test_prefix_respects_component_boundary(self, path: str) -> None:
        """A grant on /a does not cover /ab: prefixes match whole components."""
        policy = Policy.of([user("/", Perm.LIST), user("/a", Perm.all())])
        assert Perm.LIST == policy.perms(path)

    def test_user_and_group_add_up_at_equal_depth(self) -> None:
        """A user's and a group's grants at the same path are united."""
        policy = Policy.of([user("/shared", Perm.LIST), group("/shared", Perm.DOWNLOAD)])
        assert READ == policy.perms("/shared/f")

    def test_deeper_group_grant_overrides_user_grant(self) -> None:
        """Depth beats principal: a group grant deeper than the user's decides alone."""
        policy = Policy.of([user("/", Perm.all()), group("/ro", READ)])
        assert READ == policy.perms("/ro/f")

    def test_shallower_grant_does_not_add_to_deeper(self) -> None:
        """Grants at different depths never add up."""
        policy = Policy.of([group("/", Perm.DELETE), user("/a", READ)])
        assert (False, True) == (policy.allows("/a/f", Perm.DELETE), policy.allows("/f", Perm.DELETE))

    def test_allows_needs_every_bit(self) -> None:
        """allows() with several permissions needs all of them."""
        policy = Policy.of([user("/", Perm.LIST)])
        assert (True, False) == (policy.allows("/", Perm.LIST), policy.allows("/", READ))


class TestHasRulesBelow:
    def test_rule_strictly_inside(self) -> None:
        """A grant below a directory is a rule inside it."""
        policy = Policy.of([user("/alice", Perm.all()), user("/alice/ro", READ)])
        assert (True, True) == (policy.has_rules_below("/alice"), policy.has_rules_below("/"))

    def test_rule_at_the_path_or_above_is_not_below(self) -> None:
        """The directory's own grant and its ancestors' do not count."""
        policy = Policy.of([user("/alice", Perm.all()), user("/alice/ro", READ)])
        assert (False, False) == (policy.has_rules_below("/alice/ro"), policy.has_rules_below("/alice/ro/x"))

    def test_sibling_with_common_prefix_is_not_below(self) -> None:
        """A grant on /alice2 is not inside /alice."""
        policy = Policy.of([user("/alice", Perm.all()), user("/alice2", Perm.all())])
        assert False is policy.has_rules_below("/alice")
