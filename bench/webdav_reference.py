"""A bare wsgidav server: the reference webdav_bench.py runs beside xferd and nginx.

It is the library xferd's WebDAV frontend is built on, served by cheroot in worker threads as
xferd's is, with a ``FilesystemProvider`` over a plain directory: no VirtualFS, no metadata
store, no checksums, no atomic commit, nothing fsynced. Transfers move in 1 MiB blocks
(``block_size``, as xferd's ``webdav.block_size``), wsgidav's in-memory lock storage and
property manager are on, and HTTP Basic authentication checks one user's plain password. Its
figures show how far wsgidav itself gets on the machine of the run.

    python bench/webdav_reference.py --port 8080 --root DIR --user bench --password-stdin
"""

from __future__ import annotations

import argparse
import logging
import sys

from cheroot import wsgi
from wsgidav.fs_dav_provider import FilesystemProvider
from wsgidav.wsgidav_app import WsgiDAVApp

BLOCK_SIZE = 1024 * 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-stdin", action="store_true", required=True)
    p.add_argument("--threads", type=int, default=32)
    args = p.parse_args()
    password = sys.stdin.readline().rstrip("\n")

    app = WsgiDAVApp({
        "provider_mapping": {"/": FilesystemProvider(args.root)},
        "simple_dc": {"user_mapping": {"*": {args.user: {"password": password}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "lock_storage": True,
        "property_manager": True,
        "block_size": BLOCK_SIZE,
        "verbose": 1,
        "logging": {"enable_loggers": []},
    })
    logging.getLogger("wsgidav").setLevel(logging.WARNING)
    server = wsgi.Server(("127.0.0.1", args.port), app, numthreads=args.threads)
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
