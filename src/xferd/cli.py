"""The command line: ``xferd serve``, ``check-config``, ``user ...``, ``gc``, ``version``.

The only place that reads config files and the environment. User commands work against the same
``--config``/``--data-dir`` as ``serve``, also while the daemon runs (SQLite in WAL mode), and a
change applies to the next login at once (logins read the store, no cache).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from xferd import __version__
from xferd.auth import DEFAULT_TENANT, hash_password, parse_public_key
from xferd.config import Config, load
from xferd.errors import ConfigError, XferdError
from xferd.logging import configure
from xferd.metadata.models import Perm, PublicKey, Quota
from xferd.metadata.sql import SqlMetadataStore
from xferd.vfs import paths


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config file (default: the embedded default)")
    common.add_argument("--data-dir", metavar="DIR", help="data directory (default ./xferd-data, or XFERD_DATA_DIR)")

    parser = argparse.ArgumentParser(prog="xferd", description="A multi-protocol file-transfer server.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", parents=[common], help="run the daemon")
    check = sub.add_parser("check-config", parents=[common], help="validate a config file")
    check.set_defaults(config_required=True)
    sub.add_parser("version", help="print the version")
    sub.add_parser("gc", parents=[common], help="delete the bytes of unreferenced blobs once")

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    tenant = argparse.ArgumentParser(add_help=False)
    tenant.add_argument("--tenant", default=DEFAULT_TENANT)

    add = user.add_parser("add", parents=[common, tenant], help="create a user")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--key", action="append", default=[], metavar="PUBKEY_FILE", help="an OpenSSH public key file")
    add.add_argument("--home", help="home directory in the tenant's tree (default /NAME)")
    add.add_argument("--perms", default="*", help=f"permissions on the home: * or a list of {_perm_names()}")
    add.add_argument("--quota-bytes", type=int, default=0, help="0: unlimited")
    add.add_argument("--quota-files", type=int, default=0, help="0: unlimited")

    user.add_parser("list", parents=[common], help="list users").add_argument("--tenant")
    rm = user.add_parser("del", parents=[common, tenant], help="delete a user (their files stay)")
    rm.add_argument("name")
    pw = user.add_parser("passwd", parents=[common, tenant], help="set a user's password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", required=True)
    dis = user.add_parser("disable", parents=[common, tenant], help="refuse a user's logins")
    dis.add_argument("name")
    en = user.add_parser("enable", parents=[common, tenant], help="allow a user's logins again")
    en.add_argument("name")
    grant = user.add_parser("grant", parents=[common, tenant], help="set a user's permissions on a path")
    grant.add_argument("name")
    grant.add_argument("path", help="tenant-absolute path, e.g. /alice/inbox")
    grant.add_argument("perms", help=f"* or a comma list of {_perm_names()}; empty for none")
    quota = user.add_parser("quota", parents=[common, tenant], help="set a user's quota")
    quota.add_argument("name")
    quota.add_argument("--bytes", type=int, default=0)
    quota.add_argument("--files", type=int, default=0)
    key = user.add_parser("key", help="manage a user's SSH keys").add_subparsers(dest="key_command", required=True)
    key_add = key.add_parser("add", parents=[common, tenant], help="add a public key")
    key_add.add_argument("name")
    key_add.add_argument("pubkey_file")
    return parser


def _perm_names() -> str:
    return ",".join(m.name.lower() for m in Perm if m.name)


def _load_config(args: argparse.Namespace) -> Config:
    return load(args.config, data_dir=args.data_dir)


def _fail(message: str) -> int:
    print(f"xferd: {message}", file=sys.stderr)
    return 2


def _read_password() -> str:
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    if not password:
        raise XferdError("the password read from standard input is empty")
    return password


def _read_key(path: str) -> PublicKey:
    try:
        with open(path, encoding="utf-8") as f:
            return parse_public_key(f.read())
    except OSError as exc:
        raise XferdError(f"{path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise XferdError(f"{path}: {exc}") from exc


def _with_store(config: Config, work: Callable[[SqlMetadataStore], Awaitable[Any]]) -> Any:
    from xferd.daemon import open_metadata

    async def run() -> Any:
        config.data_path.mkdir(parents=True, exist_ok=True)
        store = open_metadata(config)
        await store.open()
        try:
            await store.ensure_tenant(DEFAULT_TENANT)
            return await work(store)
        finally:
            await store.close()
    return asyncio.run(run())


def _user_command(args: argparse.Namespace, config: Config) -> int:
    cmd = args.user_command
    if cmd == "add":
        password = _read_password() if args.password_stdin else None
        keys = [_read_key(path) for path in args.key]
        if password is None and not keys:
            return _fail("a user needs a password (--password-stdin) or a key (--key FILE)")
        try:
            perms = Perm.parse(args.perms)
        except ValueError as exc:
            return _fail(f"--perms: {exc}")
        home = paths.normalize_home(args.home or "/" + args.name)
        if args.quota_bytes < 0 or args.quota_files < 0:
            return _fail("quotas must not be negative")
        hashed = hash_password(password) if password is not None else None
        _with_store(config, lambda s: s.create_user(args.tenant, args.name, hashed, home, perms,
                                                    Quota(args.quota_bytes, args.quota_files), keys))
        print(f"user {args.name} created in tenant {args.tenant}, home {home}, permissions {perms.render()}")
    elif cmd == "list":
        users = _with_store(config, lambda s: s.list_users(args.tenant))
        for u in users:
            state = "disabled" if u.disabled else "enabled"
            quota = f"{u.quota_bytes or '-'} bytes/{u.quota_files or '-'} files"
            print(f"{u.tenant.name}\t{u.name}\t{u.home}\t{state}\tquota {quota}")
    elif cmd == "del":
        _with_store(config, lambda s: s.delete_user(args.tenant, args.name))
        print(f"user {args.name} deleted")
    elif cmd == "passwd":
        hashed = hash_password(_read_password())
        _with_store(config, lambda s: s.set_password(args.tenant, args.name, hashed))
        print(f"password of {args.name} changed")
    elif cmd in ("disable", "enable"):
        _with_store(config, lambda s: s.set_disabled(args.tenant, args.name, cmd == "disable"))
        print(f"user {args.name} {cmd}d")
    elif cmd == "grant":
        try:
            perms = Perm.parse(args.perms)
        except ValueError as exc:
            return _fail(f"perms: {exc}")
        path = paths.normalize_home(args.path)
        _with_store(config, lambda s: s.set_grant(args.tenant, args.name, path, perms))
        print(f"{args.name} has {perms.render() or 'no permissions'} on {path}")
    elif cmd == "quota":
        _with_store(config, lambda s: s.set_quota(args.tenant, args.name, Quota(args.bytes, args.files)))
        print(f"quota of {args.name} set")
    elif cmd == "key":
        key = _read_key(args.pubkey_file)
        _with_store(config, lambda s: s.add_key(args.tenant, args.name, key))
        print(f"key {key.fingerprint} added to {args.name}")
    return 0


def _gc(config: Config) -> int:
    from xferd.daemon import open_storage
    from xferd.vfs.gc import Collector

    async def work(store: SqlMetadataStore) -> int:
        storage = open_storage(config)
        try:
            collector = Collector(store, storage, None, config.gc, config.node_id, "cli")
            return await collector.run_once()
        finally:
            await storage.close()
    count = _with_store(config, work)
    print(f"{count} blobs deleted")
    return 0


def _serve(config: Config) -> int:
    from xferd.daemon import Daemon, StartupError

    try:
        asyncio.run(Daemon(config).run())
    except StartupError as exc:
        return _fail(str(exc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"xferd {__version__}")
        return 0
    if args.command == "check-config" and not args.config:
        return _fail("check-config needs --config FILE")
    try:
        config = _load_config(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"xferd: config: {problem}", file=sys.stderr)
        return 2
    configure(config.log)
    try:
        if args.command == "check-config":
            print(f"{args.config}: ok")
            return 0
        if args.command == "serve":
            return _serve(config)
        if args.command == "gc":
            return _gc(config)
        return _user_command(args, config)
    except XferdError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
