"""A bare pyftpdlib server: the reference ftp_bench.py runs beside xferd and vsftpd.

It is the library xferd's FTP frontend is built on, in the same thread model
(``ThreadedFTPServer``, a thread per connection), serving a plain directory: no VirtualFS, no
metadata store, no checksums, no atomic commit, nothing fsynced. Its figures show how far
pyftpdlib itself gets on the machine of the run, so that xferd's distance to vsftpd can be split
into the library's share and xferd's own. Explicit FTPS (``TLS_FTPHandler``) is offered, not
required. Logs only warnings, as the benchmark's xferd does.

    python bench/ftp_reference.py --port 2121 --passive 30000-30099 --root DIR --cert C --key K \\
        --user bench --password-stdin
"""

from __future__ import annotations

import argparse
import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import ThreadedFTPServer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--passive", required=True, metavar="FIRST-LAST")
    p.add_argument("--root", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-stdin", action="store_true", required=True)
    args = p.parse_args()
    password = sys.stdin.readline().rstrip("\n")
    first, _, last = args.passive.partition("-")

    logging.basicConfig(level=logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, password, args.root, perm="elradfmwMT")

    class Handler(TLS_FTPHandler):  # type: ignore[misc]  # pyftpdlib is untyped
        pass

    Handler.authorizer = authorizer
    Handler.passive_ports = range(int(first), int(last) + 1)
    Handler.certfile = args.cert
    Handler.keyfile = args.key
    Handler.tls_control_required = False
    Handler.tls_data_required = False
    server = ThreadedFTPServer(("127.0.0.1", args.port), Handler)
    server.max_cons = 512
    server.serve_forever()


if __name__ == "__main__":
    main()
