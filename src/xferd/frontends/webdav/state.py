"""wsgidav's lock storage and property manager, kept in the metadata store through the VirtualFS.

Locks are stored by tenant path (see :meth:`VirtualFS.lock`), so they survive restarts, hold on
every node that shares the store, and bind SFTP and FTP too. wsgidav speaks of a lock's ``root``
as a URL path below the user's home; :class:`LockStorage` translates both ways, and a lock taken
above a user's home (by a user with a wider one) is not shown to them, but still refuses their
writes (the VirtualFS checks every change).

Dead properties belong to the object, not its name: they are keyed by inode, so MOVE keeps them
without any work and COPY copies them (see ``provider.py``).

wsgidav calls the lock storage without the request; the request's environ is kept per thread
(cheroot serves one request per worker thread at a time) by :func:`bind`.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote, unquote

from lxml import etree
from wsgidav.dav_error import HTTP_LOCKED, DAVError, DAVErrorCondition

from xferd import errors
from xferd.frontends.webdav.provider import Request, dav_errors
from xferd.metadata.models import LockRecord
from xferd.vfs import paths

_current = threading.local()


def bind(environ: dict[str, Any]) -> None:
    """The request this worker thread serves now (until its next one)."""
    _current.environ = environ


def _request() -> Request:
    environ = getattr(_current, "environ", None)
    if environ is None:
        raise RuntimeError("WebDAV lock storage used outside a request")
    return Request(environ)


def _as_dict(req: Request, lock: LockRecord) -> dict[str, Any] | None:
    root = paths.from_tenant(req.session.user.home, lock.path)
    if root is None:
        return None
    # wsgidav names resources by their quoted URL ("ref URL"); the store keeps plain paths.
    return {"root": quote(root, safe="/"), "type": "write", "scope": lock.scope, "depth": lock.depth,
            "owner": lock.owner, "timeout": lock.timeout, "expire": lock.expire, "principal": lock.principal,
            "token": lock.token}


class LockStorage:
    """The interface of wsgidav's ``LockStorageDict``, over the VirtualFS."""

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def cleanup(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def get(self, token: str) -> dict[str, Any] | None:
        req = _request()
        lock = req.call(req.vfs.get_lock, token)
        return _as_dict(req, lock) if lock is not None else None

    def create(self, path: str, lock: dict[str, Any]) -> dict[str, Any]:
        req = _request()
        req.environ.pop("xferd.locks", None)
        timeout = float(lock.get("timeout") or -1)
        try:
            where = unquote(path).rstrip("/") or "/"
            record = req.bridge.call(req.vfs.lock, req.session, where, lock["depth"], lock["scope"],
                                     _xml_text(lock.get("owner") or ""), timeout)
        except errors.Locked as exc:
            raise DAVError(HTTP_LOCKED, context_info=str(exc.strerror),
                           err_condition=DAVErrorCondition("{DAV:}no-conflicting-lock")) from exc
        except OSError as exc:
            with dav_errors():
                raise exc from None
        shown = _as_dict(req, record)
        assert shown is not None
        lock.update(shown)
        return lock

    def refresh(self, token: str, *, timeout: float) -> dict[str, Any]:
        req = _request()
        req.environ.pop("xferd.locks", None)
        lock = req.call(req.vfs.refresh_lock, token, float(timeout))
        shown = _as_dict(req, lock) if lock is not None else None
        if shown is None:
            raise ValueError("Lock does not exist")
        return shown

    def delete(self, token: str) -> bool:
        req = _request()
        req.environ.pop("xferd.locks", None)
        # The audit event names the request's path (UNLOCK's URL, or the DELETE or MOVE that ends the lock).
        return bool(req.call(req.vfs.unlock, req.environ.get("PATH_INFO") or "/", token))

    def get_lock_list(self, path: str, *, include_root: bool, include_children: bool,
                      token_only: bool) -> list[Any]:
        req = _request()
        path = unquote(path).rstrip("/") or "/"
        where = paths.tenant_path(req.session.user.home, paths.split(path))
        found = []
        for lock in _snapshot(req):
            direct = lock.path == where
            child = lock.path != where and (where == "/" or lock.path.startswith(where + "/"))
            if (include_root and direct) or (include_children and child):
                shown = _as_dict(req, lock)
                if shown is not None:
                    found.append(lock.token if token_only else shown)
        return found


def _snapshot(req: Request) -> list[LockRecord]:
    """The live locks at and above the user's home and everywhere below it, read once per request
    (wsgidav asks for the locks of each ancestor of each path it checks) until one changes."""
    cached: list[LockRecord] | None = req.environ.get("xferd.locks")
    if cached is None:
        cached = req.environ["xferd.locks"] = req.call(req.vfs.locks, "/", True)
    return cached


def _xml_text(value: Any) -> str:
    """A property value as wsgidav hands it over (an element, or its serialization) as text."""
    if isinstance(value, bytes):
        text = value.decode("utf-8")
    elif isinstance(value, str):
        text = value
    else:
        text = etree.tostring(value, encoding="unicode")
    if text.startswith("<?xml"):  # lxml refuses text that declares its encoding
        text = text[text.index("?>") + 2:].lstrip()
    return text


class PropertyManager:
    """The interface of wsgidav's ``PropertyManager``, over the VirtualFS (dead properties by inode).

    Values are cached for the request, so PROPFIND of several names reads them once."""

    def _path(self, norm_url: str) -> str:
        return unquote(norm_url)

    def _props(self, req: Request, path: str) -> dict[str, str]:
        cache: dict[str, dict[str, str]] = req.environ.setdefault("xferd.props", {})
        if path not in cache:
            try:
                cache[path] = req.call(req.vfs.props, path)
            except DAVError:
                cache[path] = {}
        return cache[path]

    def get_properties(self, norm_url: str, environ: dict[str, Any] | None = None) -> list[str]:
        return list(self._props(_request(), self._path(norm_url)))

    def get_property(self, norm_url: str, name: str, environ: dict[str, Any] | None = None) -> str | None:
        return self._props(_request(), self._path(norm_url)).get(name)

    def write_property(self, norm_url: str, name: str, property_value: str, dry_run: bool = False,
                       environ: dict[str, Any] | None = None) -> None:
        if not dry_run:
            self._change(norm_url, {name: _xml_text(property_value)})

    def remove_property(self, norm_url: str, name: str, dry_run: bool = False,
                        environ: dict[str, Any] | None = None) -> None:
        if not dry_run:
            self._change(norm_url, {name: None})

    def _change(self, norm_url: str, changes: dict[str, str | None]) -> None:
        req = _request()
        path = self._path(norm_url)
        req.call(req.vfs.set_props, path, changes)
        req.environ.get("xferd.props", {}).pop(path, None)

    def remove_properties(self, norm_url: str, environ: dict[str, Any] | None = None) -> None:
        pass  # they go with the inode

    def copy_properties(self, src_url: str, dest_url: str, environ: dict[str, Any] | None = None) -> None:
        req = _request()
        req.call(req.vfs.copy_props, self._path(src_url), self._path(dest_url))

    def move_properties(self, src_url: str, dest_url: str, with_children: bool,
                        environ: dict[str, Any] | None = None) -> None:
        pass  # keyed by inode: they move with it

