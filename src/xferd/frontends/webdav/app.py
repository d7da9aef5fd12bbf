"""The WSGI application in front of wsgidav: authentication, request guards, the fast listing.

Per request, in order:

1. ``OPTIONS`` without credentials is answered here (Windows' mini-redirector gives up when its
   first, anonymous OPTIONS gets 401);
2. Finder's ``._*`` and ``.DS_Store`` files are refused without a lookup when configured so;
3. Basic authentication through the shared :class:`~xferd.auth.Authenticator`; over plain HTTP
   from a non-loopback client it is refused (``webdav.require_tls``). A verified password is
   reused for ``auth_cache_seconds`` (:mod:`.logins`);
4. XML bodies (PROPFIND, PROPPATCH, LOCK) are read here: larger than ``max_xml_bytes`` gets 413,
   and a body with a document type declaration gets 400 (no WebDAV client sends one; it is how
   entity expansion and external entities arrive);
5. ``PROPFIND`` of depth 0 or 1 goes to :mod:`.propfind` (one listing call, streamed), a GET of a
   collection URL to :mod:`.browse` (an HTML listing), a GET of a whole file to :mod:`.fastget`
   (sendfile), a plain PUT to :mod:`.fastput` (one call, or read from the socket hop by hop), anything else (and
   what those decline) to wsgidav with the session in ``environ["xferd.session"]``.

Every refusal here emits a ``webdav.bad_request`` audit event.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from lxml import etree
from wsgidav import util
from wsgidav.wsgidav_app import WsgiDAVApp

from xferd.auth import Authenticator
from xferd.config import WebdavConfig
from xferd.frontends.bridge import Bridge
from xferd.frontends.net import is_loopback, plain_ip
from xferd.frontends.webdav import browse, fastget, fastput, propfind, state
from xferd.frontends.webdav.logins import Logins, basic_credentials
from xferd.frontends.webdav.provider import XferdProvider, destination_path
from xferd.vfs.filesystem import VirtualFS
from xferd.vfs.session import Session

log = structlog.get_logger("xferd.webdav")

StartResponse = Callable[..., Any]
XML_METHODS = frozenset({"PROPFIND", "PROPPATCH", "LOCK"})
DAV_METHODS = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK"
def xml_parser() -> etree.XMLParser:
    """A parser for request bodies: no entities resolved, no DTD, no network, no huge trees."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


XML_PARSER = xml_parser()  # the cheroot threads'


def is_apple_metadata(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith("._") or name == ".DS_Store"


def tls_required(config: WebdavConfig, remote: str) -> bool:
    """Whether this client may send a password only over HTTPS (``webdav.require_tls``)."""
    return config.require_tls == "always" or (config.require_tls == "auto" and not is_loopback(remote))


class Frontend:
    """What the WSGI layers share: config, VirtualFS, bridge, authenticator (read-only after start)."""

    def __init__(self, config: WebdavConfig, vfs: VirtualFS, auth: Authenticator, bridge: Bridge) -> None:
        self.config = config
        self.vfs = vfs
        self.auth = auth
        self.bridge = bridge
        self.logins = Logins(config, auth, vfs)


class WebdavApp:
    def __init__(self, frontend: Frontend) -> None:
        self.frontend = frontend
        self.config = frontend.config
        self.dav = WsgiDAVApp({
            "provider_mapping": {"/": XferdProvider()},
            "lock_storage": state.LockStorage(),
            "property_manager": state.PropertyManager(),
            "middleware_stack": ["wsgidav.error_printer.ErrorPrinter", "wsgidav.request_resolver.RequestResolver"],
            "block_size": self.config.block_size,
            "add_header_MS_Author_Via": True,
            "verbose": 0,
            "logging": {"enable": False},
            "dir_browser": {"enable": False},
            "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False,
                                   "default_to_digest": False},
            "simple_dc": {"user_mapping": {"*": True}},
            # PROPPATCH of getlastmodified, and Windows' Win32LastModifiedTime, set the file's mtime
            # (Explorer and rclone keep modification times this way).
            "mutable_live_props": ["{DAV:}getlastmodified"],
            "hotfixes": {"re_encode_path_info": False, "unquote_path_info": False, "emulate_win32_lastmod": True},
        })

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        remote = plain_ip(environ.get("REMOTE_ADDR", ""))
        environ["xferd.frontend"] = self.frontend
        try:
            # PEP 3333 hands the path over as Latin-1; clients send UTF-8. Decoded once, here, for
            # this module's own handlers and wsgidav alike.
            environ["PATH_INFO"] = util.re_encode_wsgi(environ.get("PATH_INFO") or "/")
        except UnicodeDecodeError:
            self._audit(None, remote, environ, "EINVAL", "path is not UTF-8")
            return _respond(start_response, "400 Bad Request", b"Paths must be UTF-8.\n")
        if method == "OPTIONS" and "HTTP_AUTHORIZATION" not in environ:
            return self._options(start_response)
        if self.config.apple_files == "refuse" and is_apple_metadata(environ.get("PATH_INFO", "")):
            return _respond(start_response, "404 Not Found", b"")
        if environ.get("wsgi.url_scheme") != "https" and tls_required(self.config, remote):
            self._audit(None, remote, environ, "EACCES", "Basic authentication over plain HTTP refused")
            return _respond(start_response, "403 Forbidden",
                            b"Use HTTPS: passwords are not accepted over plain HTTP.\n")
        session = self._authenticate(environ, remote)
        if session is not None and _dot_dot(environ):
            self._audit(session, remote, environ, "EINVAL", "path with a '..' segment")
            return _respond(start_response, "400 Bad Request", b"Paths may not contain '..' segments.\n")
        if session is None:
            return _respond(start_response, "401 Unauthorized", b"Authentication required.\n",
                            [("WWW-Authenticate", f'Basic realm="{self.config.realm}", charset="UTF-8"')])
        environ["xferd.session"] = session
        environ["wsgidav.auth.user_name"] = session.user.name
        environ["wsgidav.auth.realm"] = self.config.realm
        environ["wsgidav.auth.roles"] = None
        if method in XML_METHODS:
            refused = self._read_xml_body(environ, session)
            if refused is not None:
                return _respond(start_response, refused[0], refused[1].encode() + b"\n")
        state.bind(environ)
        with structlog.contextvars.bound_contextvars(**session.fields):
            fast = None
            if method == "PROPFIND":
                fast = propfind.handle(environ, start_response)
            elif method == "PUT":
                fast = fastput.handle(environ, start_response)
            elif method in ("GET", "HEAD"):
                fast = browse.handle(environ, start_response)
                if fast is None and method == "GET":
                    fast = fastget.handle(environ, start_response)
            if fast is not None:
                return fast
            return self.dav(environ, start_response)  # type: ignore[no-any-return]

    def _options(self, start_response: StartResponse) -> Iterable[bytes]:
        return _respond(start_response, "200 OK", b"", [
            ("DAV", "1, 2, 3"), ("MS-Author-Via", "DAV"), ("Allow", DAV_METHODS), ("Content-Length", "0")])

    def _authenticate(self, environ: dict[str, Any], remote: str) -> Session | None:
        credentials = basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is None:
            return None
        logins = self.frontend.logins
        session = logins.cached(credentials, remote)
        if session is None:
            session = self.frontend.bridge.call(logins.verify, credentials, remote)
        return session

    def _read_xml_body(self, environ: dict[str, Any], session: Session) -> tuple[str, str] | None:
        """Read an XML request body into memory, or say why it is refused (status, message)."""
        limit = self.config.max_xml_bytes
        length_text = environ.get("CONTENT_LENGTH") or ""
        stream = environ["wsgi.input"]
        try:
            if length_text:
                length = int(length_text)
                if length > limit:
                    self._audit(session, "", environ, "E2BIG", f"XML body of {length} bytes")
                    return "413 Request Entity Too Large", f"XML bodies are limited to {limit} bytes."
                body = stream.read(length) if length > 0 else b""
            elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
                body = stream.read(limit + 1)
                if len(body) > limit:
                    self._audit(session, "", environ, "E2BIG", "chunked XML body over the limit")
                    return "413 Request Entity Too Large", f"XML bodies are limited to {limit} bytes."
            else:
                body = b""
        except ValueError:
            self._audit(session, "", environ, "EINVAL", "bad Content-Length")
            return "400 Bad Request", "Bad Content-Length."
        try:
            root = parse_xml(body, XML_PARSER)
        except XmlRefused as exc:
            self._audit(session, "", environ, "EINVAL", exc.detail)
            return "400 Bad Request", exc.reply
        if root is not None:
            environ["xferd.xml"] = root
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["xferd.body"] = body
        return None

    def _audit(self, session: Session | None, remote: str, environ: dict[str, Any], outcome: str,
               error: str) -> None:
        if session is not None:
            logger, fields = session.log, session.fields
        else:
            fields = {"tenant": "", "user": "", "protocol": "webdav", "remote": remote}
            logger = structlog.get_logger("xferd.audit").bind(**fields)
        path = environ.get("PATH_INFO", "")
        self.frontend.bridge.call_soon(self.frontend.vfs.audit.emit, logger, fields, "webdav.bad_request", path,
                                       outcome, True, error=error, method=environ.get("REQUEST_METHOD", ""))


def _dot_dot(environ: dict[str, Any]) -> bool:
    """Whether the path or the Destination has a ``..`` segment (clients send normalized URLs;
    wsgidav would answer one that climbs above the root with an incomplete response)."""
    paths = [environ.get("PATH_INFO") or "", destination_path(environ) or ""]
    return any(".." in p.split("/") for p in paths)


class XmlRefused(ValueError):
    """An XML request body that is not accepted: ``detail`` for the audit event, ``reply`` for the client."""

    def __init__(self, detail: str, reply: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reply = reply


def parse_xml(body: bytes, parser: etree.XMLParser) -> Any:
    """The root element of an XML request body, None for an empty one; :class:`XmlRefused` for a
    body with a document type declaration (looked for before parsing, and after it, for one the
    byte scan cannot see, such as in UTF-16) or one that does not parse. ``parser`` resolves no
    entities and loads no DTD; each thread that parses on its own (the event loop) has its own, as
    lxml serialises the users of one parser."""
    dtd = XmlRefused("XML body with a document type declaration", "XML document type declarations are not accepted.")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise dtd
    if not body.strip():
        return None
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise XmlRefused(f"malformed XML: {exc}", "Malformed XML body.") from exc
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:
        raise dtd
    return root


def _respond(start_response: StartResponse, status: str, body: bytes,
             headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    out = list(headers or [])
    if not any(k.lower() == "content-length" for k, _ in out):
        out.append(("Content-Length", str(len(body))))
    if body:
        out.append(("Content-Type", "text/plain; charset=utf-8"))
    start_response(status, out)
    return [body]
