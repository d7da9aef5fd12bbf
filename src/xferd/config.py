"""The daemon's configuration: built once, frozen, handed down.

Only the CLI reads files and the environment (:func:`load`); everything else takes a :class:`Config`.
Tests build one directly with :func:`default_config`. Every key is listed with its default in
``config/xferd.example.toml``; an unknown or ill-typed key is a :class:`~xferd.errors.ConfigError`
that names it. ``XFERD_<SECTION>_<KEY>`` environment variables override keys
(``XFERD_SFTP_PORT=2223``, ``XFERD_DATA_DIR=/srv/xferd``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from xferd.errors import ConfigError

MetadataKind = Literal["sqlite"]
StorageKind = Literal["local"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
SqliteSync = Literal["full", "normal"]
TlsRequirement = Literal["auto", "always", "never"]
TlsVersion = Literal["1.2", "1.3"]
AppleFiles = Literal["store", "refuse"]

# AES-GCM only: in SSH the client's order wins, and OpenSSH lists chacha20 and then the aes-ctr
# ciphers before AES-GCM, which cost 1.3-1.8x its CPU in asyncssh (docs/architecture.md). Every
# maintained client has AES-GCM; add aes128-ctr here for clients from before 2021 that lack it.
DEFAULT_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
)


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = "info"
    format: LogFormat = "auto"


@dataclass(frozen=True)
class MetadataConfig:
    kind: MetadataKind = "sqlite"
    path: str = ""  # empty: <data_dir>/metadata.db
    sqlite_synchronous: SqliteSync = "full"


@dataclass(frozen=True)
class StorageConfig:
    kind: StorageKind = "local"
    path: str = ""  # empty: <data_dir>/blobs
    fsync: bool = True


@dataclass(frozen=True)
class SftpConfig:
    enabled: bool = True
    addresses: tuple[str, ...] = ("*",)
    port: int = 2222
    host_keys: tuple[str, ...] = ()  # empty: ed25519 and RSA keys generated in <data_dir>/host_keys
    ciphers: tuple[str, ...] = DEFAULT_CIPHERS
    idle_timeout: float = 900.0
    login_timeout: float = 60.0
    max_sessions_per_user: int = 16
    max_packet_size: int = 262144 + 1024
    window_size: int = 16 * 1024 * 1024
    banner: str = ""


@dataclass(frozen=True)
class FtpConfig:
    enabled: bool = True
    addresses: tuple[str, ...] = ("*",)
    port: int = 2121
    implicit_tls_port: int = 2990  # 0: no implicit TLS listener
    passive_ports: str = "30000-30099"
    masquerade_address: str = ""  # empty: the address the client connected to
    masquerade_networks: tuple[str, ...] = ()  # "CIDR=address": clients in CIDR are sent address
    # Off, as on Files.com: the server would connect out to an address the client names, which fails
    # behind client-side NAT and is the FTP bounce vector; every current client defaults to passive.
    allow_active: bool = False
    tls_cert: str = ""  # empty: a self-signed certificate generated in <data_dir>/tls
    tls_key: str = ""
    require_tls: TlsRequirement = "auto"  # auto: required unless the client connected to a loopback address
    require_tls_session_reuse: bool = True
    # 1.2: with 1.3, OpenSSL sends session tickets on every data connection; a client that only
    # uploads never reads them, and its close then resets the connection and drops the upload's
    # tail (rclone and other Go clients; docs/architecture.md).
    tls_max_version: TlsVersion = "1.2"
    max_connections: int = 512
    max_connections_per_user: int = 16
    max_connections_per_address: int = 64
    idle_timeout: float = 900.0
    data_timeout: float = 300.0
    banner: str = ""
    virtual_hosts: tuple[str, ...] = ()  # "host=tenant": the RFC 7151 HOST command selects the tenant

    @property
    def passive_range(self) -> tuple[int, int]:
        low, _, high = self.passive_ports.partition("-")
        return int(low), int(high or low)

    @property
    def masquerade_map(self) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
        """(network, advertised address) pairs, in the order given: the first match wins."""
        out = []
        for item in self.masquerade_networks:
            net, _, address = item.partition("=")
            out.append((ipaddress.ip_network(net.strip(), strict=False), address.strip()))
        return out

    @property
    def host_tenants(self) -> dict[str, str]:
        return {host.strip().lower(): tenant.strip()
                for host, _, tenant in (item.partition("=") for item in self.virtual_hosts)}


@dataclass(frozen=True)
class WebdavConfig:
    enabled: bool = True
    addresses: tuple[str, ...] = ("*",)
    port: int = 8080  # plain HTTP; 0: none
    tls_port: int = 8443  # HTTPS; 0: none
    tls_cert: str = ""  # empty: the certificate generated in <data_dir>/tls (shared with FTPS)
    tls_key: str = ""
    # Basic authentication sends the password in the clear: over plain HTTP it is refused unless the
    # client is on a loopback address ("auto"), always ("always") or never ("never").
    require_tls: TlsRequirement = "auto"
    threads: int = 32  # worker threads per listening socket: requests each serves at once
    block_size: int = 1024 * 1024  # bytes per read and write hop (the 8 KiB default costs 2-4x)
    max_xml_bytes: int = 1024 * 1024  # largest PROPFIND/PROPPATCH/LOCK body; larger gets 413
    allow_depth_infinity: bool = False  # PROPFIND Depth: infinity (RFC 4918 lets servers refuse it)
    apple_files: AppleFiles = "store"  # Finder's ._* and .DS_Store: store them, or refuse them cheaply
    auth_cache_seconds: float = 30.0  # a verified password is trusted this long (argon2 costs ~50 ms)
    idle_timeout: float = 60.0  # keep-alive connections idle this long are closed
    realm: str = "xferd"


@dataclass(frozen=True)
class TransferConfig:
    max_buffered_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True)
class GcConfig:
    interval: float = 300.0
    grace: float = 60.0
    pending_max_age: float = 86400.0


@dataclass(frozen=True)
class DaemonConfig:
    shutdown_grace: float = 30.0
    node_id: str = ""  # empty: the host name


@dataclass(frozen=True)
class Config:
    data_dir: str = "./xferd-data"
    log: LogConfig = field(default_factory=LogConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    sftp: SftpConfig = field(default_factory=SftpConfig)
    ftp: FtpConfig = field(default_factory=FtpConfig)
    webdav: WebdavConfig = field(default_factory=WebdavConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    gc: GcConfig = field(default_factory=GcConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def metadata_path(self) -> Path:
        return Path(self.metadata.path) if self.metadata.path else self.data_path / "metadata.db"

    @property
    def storage_path(self) -> Path:
        return Path(self.storage.path) if self.storage.path else self.data_path / "blobs"

    @property
    def host_key_dir(self) -> Path:
        return self.data_path / "host_keys"

    @property
    def tls_dir(self) -> Path:
        return self.data_path / "tls"

    @property
    def node_id(self) -> str:
        return self.daemon.node_id or socket.gethostname()


SECTIONS: dict[str, type] = {
    name: hint for name, hint in typing.get_type_hints(Config).items() if name != "data_dir"
}


def default_config(data_dir: str | Path = "./xferd-data", **sections: Any) -> Config:
    """A config for tests and the embedded default: ``default_config(tmp, sftp={"port": 2300})``."""
    raw: dict[str, Any] = {"data_dir": str(data_dir), **sections}
    return from_mapping(raw)


def load(path: str | Path | None, environ: Mapping[str, str] | None = None,
         data_dir: str | None = None) -> Config:
    """Read a TOML file (or none: the embedded default), apply ``XFERD_*`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError as exc:
            raise ConfigError([f"{path}: no such file"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    env = os.environ if environ is None else environ
    problems: list[str] = []
    _apply_environment(raw, env, problems)
    if data_dir is not None:
        raw["data_dir"] = data_dir
    if problems:
        raise ConfigError(problems)
    return from_mapping(raw)


def from_mapping(raw: Mapping[str, Any]) -> Config:
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "data_dir":
            kwargs[key] = _coerce("data_dir", value, str, problems)
        elif key in SECTIONS:
            if not isinstance(value, Mapping):
                problems.append(f"{key}: must be a table")
                continue
            kwargs[key] = _build_section(key, SECTIONS[key], value, problems)
        else:
            problems.append(f"{key}: unknown key")
    if problems:
        raise ConfigError(problems)
    config = Config(**kwargs)
    _check_values(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


def _build_section(name: str, cls: type, values: Mapping[str, Any], problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            problems.append(f"{name}.{key}: unknown key")
            continue
        kwargs[key] = _coerce(f"{name}.{key}", value, hints[key], problems)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any, problems: list[str]) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            problems.append(f"{key}: must be one of {', '.join(map(repr, choices))}, not {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            problems.append(f"{key}: must be a list of strings")
            return ()
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{key}: must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key}: must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{key}: must be a number, not {value!r}")
            return value
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            problems.append(f"{key}: must be a string, not {value!r}")
        return value
    raise AssertionError(f"config type {hint!r} of {key} has no coercion")  # pragma: no cover


def _check_values(config: Config, problems: list[str]) -> None:
    if not 0 < config.sftp.port < 65536:
        problems.append(f"sftp.port: must be between 1 and 65535, not {config.sftp.port}")
    if config.sftp.max_packet_size < 34000:
        problems.append("sftp.max_packet_size: must be at least 34000 (a 32 KiB write and its header)")
    if config.sftp.window_size < config.sftp.max_packet_size:
        problems.append("sftp.window_size: must be at least sftp.max_packet_size")
    if config.sftp.max_sessions_per_user < 1:
        problems.append("sftp.max_sessions_per_user: must be at least 1")
    if not config.sftp.ciphers:
        problems.append("sftp.ciphers: must name at least one cipher")
    for key in ("idle_timeout", "login_timeout"):
        if getattr(config.sftp, key) <= 0:
            problems.append(f"sftp.{key}: must be positive")
    _check_ftp(config.ftp, problems)
    _check_webdav(config.webdav, problems)
    for key in ("interval", "grace", "pending_max_age"):
        if getattr(config.gc, key) < 0:
            problems.append(f"gc.{key}: must not be negative")
    if config.daemon.shutdown_grace < 0:
        problems.append("daemon.shutdown_grace: must not be negative")
    if config.transfer.max_buffered_bytes < 1024 * 1024:
        problems.append("transfer.max_buffered_bytes: must be at least 1048576")


def _check_webdav(dav: WebdavConfig, problems: list[str]) -> None:
    for key in ("port", "tls_port"):
        if not 0 <= getattr(dav, key) < 65536:
            problems.append(f"webdav.{key}: must be 0 (none) or a port, not {getattr(dav, key)}")
    if dav.enabled and dav.port == 0 and dav.tls_port == 0:
        problems.append("webdav.port and webdav.tls_port: both are 0; set enabled = false instead")
    if dav.port and dav.port == dav.tls_port:
        problems.append("webdav.tls_port: must differ from webdav.port")
    if bool(dav.tls_cert) != bool(dav.tls_key):
        problems.append("webdav.tls_cert and webdav.tls_key: set both, or neither for a generated certificate")
    if dav.threads < 1:
        problems.append("webdav.threads: must be at least 1")
    if dav.block_size < 65536:
        problems.append("webdav.block_size: must be at least 65536")
    if dav.max_xml_bytes < 4096:
        problems.append("webdav.max_xml_bytes: must be at least 4096")
    for key in ("auth_cache_seconds", "idle_timeout"):
        if getattr(dav, key) < 0:
            problems.append(f"webdav.{key}: must not be negative")


def _check_ftp(ftp: FtpConfig, problems: list[str]) -> None:
    if not 0 < ftp.port < 65536:
        problems.append(f"ftp.port: must be between 1 and 65535, not {ftp.port}")
    if not 0 <= ftp.implicit_tls_port < 65536:
        problems.append(f"ftp.implicit_tls_port: must be 0 (none) or a port, not {ftp.implicit_tls_port}")
    elif ftp.implicit_tls_port == ftp.port:
        problems.append("ftp.implicit_tls_port: must differ from ftp.port")
    try:
        low, high = ftp.passive_range
        if not 1024 <= low <= high < 65536:
            raise ValueError
    except ValueError:
        problems.append(f"ftp.passive_ports: must be 'LOW-HIGH' with 1024 <= LOW <= HIGH <= 65535, "
                        f"not {ftp.passive_ports!r}")
    if ftp.masquerade_address and not _is_ipv4(ftp.masquerade_address):
        problems.append(f"ftp.masquerade_address: must be an IPv4 address (PASV can only name one), "
                        f"not {ftp.masquerade_address!r}")
    for item in ftp.masquerade_networks:
        net, sep, address = item.partition("=")
        try:
            ipaddress.ip_network(net.strip(), strict=False)
            valid = bool(sep) and _is_ipv4(address.strip())
        except ValueError:
            valid = False
        if not valid:
            problems.append(f"ftp.masquerade_networks: {item!r} is not 'CIDR=IPv4-address'")
    for item in ftp.virtual_hosts:
        host, sep, tenant = item.partition("=")
        if not (sep and host.strip() and tenant.strip()):
            problems.append(f"ftp.virtual_hosts: {item!r} is not 'host=tenant'")
    if bool(ftp.tls_cert) != bool(ftp.tls_key):
        problems.append("ftp.tls_cert and ftp.tls_key: set both, or neither for a generated certificate")
    for key in ("max_connections", "max_connections_per_user", "max_connections_per_address"):
        if getattr(ftp, key) < 1:
            problems.append(f"ftp.{key}: must be at least 1")
    for key in ("idle_timeout", "data_timeout"):
        if getattr(ftp, key) <= 0:
            problems.append(f"ftp.{key}: must be positive")


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str], problems: list[str]) -> None:
    for name, text in environ.items():
        if not name.startswith("XFERD_"):
            continue
        rest = name[len("XFERD_"):].lower()
        if rest == "data_dir":
            raw["data_dir"] = text
            continue
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            problems.append(f"{name}: names no config key")
            continue
        key = rest[len(section) + 1:]
        hints = typing.get_type_hints(SECTIONS[section])
        if key not in hints:
            problems.append(f"{name}: {section}.{key} is not a config key")
            continue
        try:
            value = _parse_env_value(text, hints[key])
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        raw.setdefault(section, {})[key] = value


def _parse_env_value(text: str, hint: Any) -> Any:
    if get_origin(hint) is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"must be true or false, not {text!r}")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"must be an integer, not {text!r}") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"must be a number, not {text!r}") from None
    return text


def describe(config: Config) -> dict[str, Any]:
    """The config as plain data, for logs and ``check-config``."""
    return dataclasses.asdict(config)

