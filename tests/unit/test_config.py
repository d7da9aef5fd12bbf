"""xferd.config: one frozen Config, built from a mapping, a TOML file and XFERD_* variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from xferd.config import Config, default_config, from_mapping, load
from xferd.errors import ConfigError


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_mapping(raw)
    return info.value.problems


def env_problems(environ: dict[str, str], path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path, environ)
    return info.value.problems


class TestDefaultConfig:
    def test_defaults(self, tmp_path: Path) -> None:
        """default_config gives the documented defaults under the given data directory."""
        config = default_config(tmp_path)
        assert (str(tmp_path), 2222, ("*",), "sqlite", "local", True) == (
            config.data_dir, config.sftp.port, config.sftp.addresses, config.metadata.kind, config.storage.kind,
            config.storage.fsync)

    def test_derived_paths(self, tmp_path: Path) -> None:
        """Empty store paths mean files under the data directory."""
        config = default_config(tmp_path)
        assert (tmp_path / "metadata.db", tmp_path / "blobs", tmp_path / "host_keys") == (
            config.metadata_path, config.storage_path, config.host_key_dir)

    def test_explicit_store_paths_win(self, tmp_path: Path) -> None:
        """metadata.path and storage.path, when set, are used as given."""
        config = default_config(tmp_path, metadata={"path": "/m.db"}, storage={"path": "/b"})
        assert (Path("/m.db"), Path("/b")) == (config.metadata_path, config.storage_path)

    def test_sections_override(self, tmp_path: Path) -> None:
        """Keyword sections set single keys and leave the rest at their defaults."""
        config = default_config(tmp_path, sftp={"port": 2300})
        assert (2300, 900.0) == (config.sftp.port, config.sftp.idle_timeout)

    def test_frozen(self, tmp_path: Path) -> None:
        """A Config cannot be changed after it is built."""
        config = default_config(tmp_path)
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.sftp.port = 1  # type: ignore[misc]

    def test_int_is_accepted_for_float(self, tmp_path: Path) -> None:
        """An integer where a number is expected becomes a float."""
        config = default_config(tmp_path, gc={"grace": 5})
        assert (5.0, float) == (config.gc.grace, type(config.gc.grace))

    def test_node_id_defaults_to_host_name(self, tmp_path: Path) -> None:
        """An empty daemon.node_id means the host name; a set one is used."""
        import socket

        assert (socket.gethostname(), "n1") == (default_config(tmp_path).node_id,
                                                 default_config(tmp_path, daemon={"node_id": "n1"}).node_id)


class TestValidation:
    def test_unknown_top_level_key(self) -> None:
        """An unknown top-level key is named."""
        assert ["colour: unknown key"] == problems({"colour": "red"})

    def test_unknown_section_key(self) -> None:
        """An unknown key in a section is named with its section."""
        assert ["sftp.prot: unknown key"] == problems({"sftp": {"prot": 22}})

    def test_section_must_be_a_table(self) -> None:
        """A section given as a scalar is named."""
        assert ["sftp: must be a table"] == problems({"sftp": 22})

    @pytest.mark.parametrize(("raw", "key"), [
        ({"sftp": {"port": "22"}}, "sftp.port"),
        ({"sftp": {"port": True}}, "sftp.port"),
        ({"sftp": {"port": 22.0}}, "sftp.port"),
        ({"sftp": {"enabled": "yes"}}, "sftp.enabled"),
        ({"sftp": {"addresses": "127.0.0.1"}}, "sftp.addresses"),
        ({"sftp": {"addresses": [1, 2]}}, "sftp.addresses"),
        ({"sftp": {"idle_timeout": "1m"}}, "sftp.idle_timeout"),
        ({"gc": {"grace": False}}, "gc.grace"),
        ({"log": {"level": "verbose"}}, "log.level"),
        ({"metadata": {"kind": "postgres"}}, "metadata.kind"),
        ({"storage": {"kind": "s3"}}, "storage.kind"),
        ({"daemon": {"node_id": 7}}, "daemon.node_id"),
        ({"data_dir": 3}, "data_dir"),
    ])
    def test_ill_typed_value_names_the_key(self, raw: dict[str, Any], key: str) -> None:
        """A value of the wrong type (or outside a Literal's choices) is a problem naming its key."""
        found = problems(raw)
        assert [key] == [p.split(":")[0] for p in found]

    @pytest.mark.parametrize(("raw", "key"), [
        ({"sftp": {"port": 0}}, "sftp.port"),
        ({"sftp": {"port": 65536}}, "sftp.port"),
        ({"sftp": {"max_packet_size": 1000}}, "sftp.max_packet_size"),
        ({"sftp": {"max_sessions_per_user": 0}}, "sftp.max_sessions_per_user"),
        ({"sftp": {"ciphers": []}}, "sftp.ciphers"),
        ({"sftp": {"idle_timeout": 0}}, "sftp.idle_timeout"),
        ({"sftp": {"login_timeout": -1}}, "sftp.login_timeout"),
        ({"gc": {"interval": -1}}, "gc.interval"),
        ({"gc": {"grace": -0.5}}, "gc.grace"),
        ({"gc": {"pending_max_age": -1}}, "gc.pending_max_age"),
        ({"daemon": {"shutdown_grace": -1}}, "daemon.shutdown_grace"),
        ({"transfer": {"max_buffered_bytes": 1024}}, "transfer.max_buffered_bytes"),
        ({"webdav": {"port": 65536}}, "webdav.port"),
        ({"webdav": {"tls_port": -1}}, "webdav.tls_port"),
        ({"webdav": {"port": 0, "tls_port": 0}}, "webdav.port and webdav.tls_port"),
        ({"webdav": {"port": 8000, "tls_port": 8000}}, "webdav.tls_port"),
        ({"webdav": {"tls_cert": "/c.pem"}}, "webdav.tls_cert and webdav.tls_key"),
        ({"webdav": {"threads": 0}}, "webdav.threads"),
        ({"webdav": {"block_size": 4096}}, "webdav.block_size"),
        ({"webdav": {"max_xml_bytes": 100}}, "webdav.max_xml_bytes"),
        ({"webdav": {"auth_cache_seconds": -1}}, "webdav.auth_cache_seconds"),
        ({"webdav": {"idle_timeout": -1}}, "webdav.idle_timeout"),
        ({"webdav": {"apple_files": "hide"}}, "webdav.apple_files"),
    ])
    def test_out_of_range_value_names_the_key(self, raw: dict[str, Any], key: str) -> None:
        """A well-typed value outside its range is a problem naming its key."""
        found = problems(raw)
        assert [key] == [p.split(":")[0] for p in found]

    def test_every_problem_is_reported_at_once(self) -> None:
        """All problems are listed together, not only the first."""
        found = problems({"colour": 1, "sftp": {"port": "x", "nope": 1}, "gc": {"grace": "y"}})
        assert {"colour", "sftp.port", "sftp.nope", "gc.grace"} == {p.split(":")[0] for p in found}

    def test_boundaries_are_accepted(self) -> None:
        """The edges of each range are valid values."""
        config = from_mapping({"sftp": {"port": 65535, "max_packet_size": 34000, "max_sessions_per_user": 1},
                               "gc": {"grace": 0, "interval": 0}, "transfer": {"max_buffered_bytes": 1048576}})
        assert (65535, 0.0) == (config.sftp.port, config.gc.grace)


class TestLoad:
    def test_no_file_no_environment_is_the_default(self) -> None:
        """load(None, {}) is the embedded default."""
        assert Config() == load(None, {})

    def test_toml_file(self, tmp_path: Path) -> None:
        """Keys come from the TOML file."""
        path = tmp_path / "xferd.toml"
        path.write_text('data_dir = "/srv/x"\n[sftp]\nport = 2022\naddresses = ["127.0.0.1"]\n')
        config = load(path, {})
        assert ("/srv/x", 2022, ("127.0.0.1",)) == (config.data_dir, config.sftp.port, config.sftp.addresses)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A config file that does not exist is a ConfigError naming it."""
        found = env_problems({}, tmp_path / "nope.toml")
        assert [f"{tmp_path / 'nope.toml'}: no such file"] == found

    def test_invalid_toml(self, tmp_path: Path) -> None:
        """A file that is not TOML is a ConfigError naming it."""
        path = tmp_path / "bad.toml"
        path.write_text("[sftp\n")
        assert [True] == [p.startswith(f"{path}: not valid TOML") for p in env_problems({}, path)]

    def test_data_dir_argument_wins(self, tmp_path: Path) -> None:
        """The --data-dir argument overrides the file and the environment."""
        config = load(None, {"XFERD_DATA_DIR": "/from/env"}, data_dir="/from/cli")
        assert "/from/cli" == config.data_dir


class TestEnvironment:
    def test_sftp_port(self) -> None:
        """XFERD_SFTP_PORT sets sftp.port, parsed as an integer."""
        assert 2223 == load(None, {"XFERD_SFTP_PORT": "2223"}).sftp.port

    def test_data_dir(self) -> None:
        """XFERD_DATA_DIR sets the data directory."""
        assert "/srv/xferd" == load(None, {"XFERD_DATA_DIR": "/srv/xferd"}).data_dir

    def test_environment_overrides_file(self, tmp_path: Path) -> None:
        """A variable wins over the file's value for the same key; the file's other keys stay."""
        path = tmp_path / "xferd.toml"
        path.write_text("[sftp]\nport = 2022\nidle_timeout = 5.0\n")
        config = load(path, {"XFERD_SFTP_PORT": "2024"})
        assert (2024, 5.0) == (config.sftp.port, config.sftp.idle_timeout)

    @pytest.mark.parametrize(("text", "expected"), [
        ("1", True), ("true", True), ("YES", True), (" on ", True),
        ("0", False), ("false", False), ("No", False), ("off", False),
    ])
    def test_bool(self, text: str, expected: bool) -> None:
        """Booleans accept 1/true/yes/on and 0/false/no/off, in any case."""
        assert expected == load(None, {"XFERD_STORAGE_FSYNC": text}).storage.fsync

    def test_bad_bool_names_the_variable(self) -> None:
        """A boolean that is none of those names the variable."""
        assert ["XFERD_SFTP_ENABLED: must be true or false, not 'maybe'"] == env_problems(
            {"XFERD_SFTP_ENABLED": "maybe"})

    def test_list(self) -> None:
        """Lists are comma-separated; blanks around items and empty items are dropped."""
        config = load(None, {"XFERD_SFTP_ADDRESSES": " 127.0.0.1, ::1 ,,"})
        assert ("127.0.0.1", "::1") == config.sftp.addresses

    def test_float(self) -> None:
        """Numbers parse as floats."""
        assert 1.5 == load(None, {"XFERD_GC_GRACE": "1.5"}).gc.grace

    def test_key_with_underscores(self) -> None:
        """A key with underscores is found after its section's prefix."""
        assert 3 == load(None, {"XFERD_SFTP_MAX_SESSIONS_PER_USER": "3"}).sftp.max_sessions_per_user

    def test_literal_is_validated(self) -> None:
        """A Literal key from the environment is checked against its choices."""
        with pytest.raises(ConfigError) as info:
            load(None, {"XFERD_LOG_LEVEL": "loud"})
        assert ["log.level"] == [p.split(":")[0] for p in info.value.problems]

    @pytest.mark.parametrize(("name", "text"), [("XFERD_SFTP_PORT", "twenty"), ("XFERD_GC_GRACE", "1m")])
    def test_bad_number_names_the_variable(self, name: str, text: str) -> None:
        """A number that does not parse names the variable."""
        assert [name] == [p.split(":")[0] for p in env_problems({name: text})]

    def test_out_of_range_from_environment(self) -> None:
        """A parsed value is range-checked like a file's, naming the key."""
        with pytest.raises(ConfigError) as info:
            load(None, {"XFERD_SFTP_PORT": "70000"})
        assert ["sftp.port"] == [p.split(":")[0] for p in info.value.problems]

    @pytest.mark.parametrize(("name", "problem"), [
        ("XFERD_COLOUR", "XFERD_COLOUR: names no config key"),
        ("XFERD_SFTP_PROT", "XFERD_SFTP_PROT: sftp.prot is not a config key"),
        ("XFERD_", "XFERD_: names no config key"),
    ])
    def test_unknown_variable_is_an_error(self, name: str, problem: str) -> None:
        """An XFERD_ variable that names no key is an error, not silently ignored."""
        assert [problem] == env_problems({name: "1"})

    def test_other_variables_are_ignored(self) -> None:
        """Variables without the XFERD_ prefix do not matter."""
        assert Config() == load(None, {"HOME": "/root", "SFTP_PORT": "1", "xferd_sftp_port": "1"})


class TestFtpSection:
    def test_defaults(self, tmp_path: Path) -> None:
        """The embedded default serves explicit FTPS on 2121, implicit on 2990, passive 30000-30099,
        TLS 1.2 with session reuse required, and no active mode."""
        ftp = default_config(tmp_path).ftp
        assert (2121, 2990, (30000, 30099), "auto", "1.2", True, False) == (
            ftp.port, ftp.implicit_tls_port, ftp.passive_range, ftp.require_tls, ftp.tls_max_version,
            ftp.require_tls_session_reuse, ftp.allow_active)

    def test_parsed_lists(self, tmp_path: Path) -> None:
        """Per-network addresses keep their order; virtual host names are matched without case."""
        ftp = default_config(tmp_path, ftp={"masquerade_networks": ["10.0.0.0/8=10.1.1.1", "0.0.0.0/0=192.0.2.9"],
                                            "virtual_hosts": ["Files.Acme.test=acme"]}).ftp
        assert [("10.0.0.0/8", "10.1.1.1"), ("0.0.0.0/0", "192.0.2.9")] == [
            (str(net), address) for net, address in ftp.masquerade_map]
        assert {"files.acme.test": "acme"} == ftp.host_tenants

    @pytest.mark.parametrize(("values", "key"), [
        ({"passive_ports": "a-b"}, "ftp.passive_ports"),
        ({"passive_ports": "80-90"}, "ftp.passive_ports"),
        ({"passive_ports": "31000-30000"}, "ftp.passive_ports"),
        ({"implicit_tls_port": 2121}, "ftp.implicit_tls_port"),
        ({"implicit_tls_port": 70000}, "ftp.implicit_tls_port"),
        ({"port": 0}, "ftp.port"),
        ({"masquerade_address": "ftp.example.com"}, "ftp.masquerade_address"),
        ({"masquerade_address": "2001:db8::1"}, "ftp.masquerade_address"),
        ({"masquerade_networks": ["10.0.0.0/8"]}, "ftp.masquerade_networks"),
        ({"masquerade_networks": ["not-a-net=10.1.1.1"]}, "ftp.masquerade_networks"),
        ({"virtual_hosts": ["acme"]}, "ftp.virtual_hosts"),
        ({"tls_cert": "/etc/cert.pem"}, "ftp.tls_cert"),
        ({"max_connections_per_user": 0}, "ftp.max_connections_per_user"),
        ({"data_timeout": 0}, "ftp.data_timeout"),
        ({"require_tls": "sometimes"}, "ftp.require_tls"),
        ({"tls_max_version": "1.1"}, "ftp.tls_max_version"),
    ])
    def test_bad_values_name_the_key(self, values: dict[str, Any], key: str) -> None:
        """Each bad FTP value is refused with the key's name."""
        assert any(p.startswith(key) for p in problems({"ftp": values}))

    def test_environment(self) -> None:
        """XFERD_FTP_* variables set FTP keys; lists are comma-separated."""
        config = load(None, {"XFERD_FTP_PASSIVE_PORTS": "31000-31010",
                             "XFERD_FTP_MASQUERADE_NETWORKS": "10.0.0.0/8=10.1.1.1,0.0.0.0/0=192.0.2.9",
                             "XFERD_FTP_ALLOW_ACTIVE": "yes"})
        assert ((31000, 31010), 2, True) == (config.ftp.passive_range, len(config.ftp.masquerade_networks),
                                             config.ftp.allow_active)
