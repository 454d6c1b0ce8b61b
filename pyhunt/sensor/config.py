"""The sensor's settings: one table, read from ``PYHUNT_*`` variables and an optional TOML file.

Each setting has one name: ``PYHUNT_<NAME>`` in the environment, ``<name>`` in the config file,
and the same row in docs/sensor-config.md and ``pyhunt sensor --help``. A set, non-empty variable
wins over the file, which wins over the default. Validation collects every problem, one line each,
so a broken deployment shows all its mistakes at once.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
import tomllib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pyhunt import escli

__all__ = ["SETTINGS", "Setting", "SensorConfig", "ConfigError", "load_config", "describe"]

ENV_PREFIX = "PYHUNT_"


class ConfigError(ValueError):
    """Invalid settings; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# -- value parsers: text -> value, ValueError with a short reason -------------------------------
def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise ValueError(f"not an integer: {text!r}") from None
        if not lo <= v <= hi:
            raise ValueError(f"must be {lo}-{hi}, not {v}")
        return v
    return parse


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"not a number of seconds: {text!r}") from None
    if not 0 < v < 86400 * 365:
        raise ValueError(f"must be positive seconds, not {text!r}")
    return v


def _seconds0(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else _seconds(text)


def _from_cli(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """The command line's parser of the same kind of value (pyhunt.escli), raising ValueError."""
    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
    return wrapped


_size = _from_cli(escli._size)     # 4M, 512K, 1G, 8MB...
_bool = _from_cli(escli._yes_no)   # true/false, yes/no, on/off, 1/0


def _interface(text: str) -> str:
    if not re.fullmatch(r"[^\s/:]{1,15}", text) or text in (".", ".."):
        raise ValueError(f"not an interface name (1-15 characters, no '/', ':' or spaces): {text!r}")
    return text


def _mode(text: str) -> str:
    if text not in MODES:
        raise ValueError(f"must be one of {', '.join(MODES)}, not {text!r}")
    return text


def _url(text: str) -> str:
    from urllib.parse import urlsplit
    p = urlsplit(text)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ValueError(f"must be http://HOST[:PORT] or https://HOST[:PORT], not {text!r}")
    try:
        p.port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    return text.rstrip("/")


def _namespace(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]{1,64}", text):
        raise ValueError(f"must be lower-case letters, digits or '_' (1-64), not {text!r}")
    return text


def _pem_file(text: str) -> str:
    try:
        with open(text, "rb") as f:
            head = f.read(1 << 20)
    except OSError as exc:
        raise ValueError(f"cannot read {text}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise ValueError(f"{text} is not a PEM certificate bundle")
    return text


def _path(text: str) -> str:
    return text


def _nets(text: str) -> tuple[str, ...]:
    out = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"not a CIDR network: {part!r}") from None
    return tuple(out)


def _bpf(text: str) -> str:
    if len(text) > 4096 or "\n" in text:
        raise ValueError("a BPF filter is one line of at most 4096 characters")
    return text


def _tunnels(text: str) -> str:
    if text not in ("zeek", "strip"):
        raise ValueError(f"must be zeek or strip, not {text!r}")
    return text


def _text(text: str) -> str:
    return text


MODES = ("capture", "vxlan-listener", "geneve-listener")


@dataclass(frozen=True)
class Setting:
    name: str                 # lower-case name (config file key; PYHUNT_<NAME> in the environment)
    default: Any              # None: no default (unset)
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("interface", "cloudlens0", _interface,
            "interface to capture (capture mode); in listener modes, the interface Zeek captures"),
    Setting("mode", "capture", _mode,
            "capture: AF_PACKET capture of the interface; vxlan-listener / geneve-listener: receive "
            "mirrored traffic as VXLAN (UDP vxlan_port) or GENEVE (UDP geneve_port) and decapsulate it"),
    Setting("vxlan_port", 4789, _int_range(1, 65535), "UDP port of the VXLAN listener"),
    Setting("geneve_port", 6081, _int_range(1, 65535), "UDP port of the GENEVE listener"),
    Setting("listen_address", "0.0.0.0", _text, "address the VXLAN/GENEVE listener binds"),
    Setting("es_url", None, _url, "Elasticsearch URL, http(s)://host:port (required)"),
    Setting("es_api_key", None, _text, "API key (base64 id:key)", secret=True),
    Setting("es_username", None, _text, "basic-auth user"),
    Setting("es_password", None, _text, "basic-auth password", secret=True),
    Setting("es_ca_certs", None, _pem_file, "PEM bundle of the CA(s) of Elasticsearch's certificate (https)"),
    Setting("es_verify_certs", True, _bool, "verify Elasticsearch's TLS certificate"),
    Setting("es_namespace", "default", _namespace, "index namespace (pyhunt-flow-<ns>-*, zeek-<log>-<ns>-*)"),
    Setting("es_batch_bytes", 8 * 1024 * 1024, _size, "bytes per bulk request"),
    Setting("es_concurrency", 2, _int_range(1, 64), "bulk requests in flight"),
    Setting("es_max_retries", 10, _int_range(0, 1000), "retries of a request answered 429/502/503/504"),
    Setting("es_timeout", 60.0, _seconds, "seconds to wait for a bulk response"),
    Setting("es_spool_max_bytes", 1024 ** 3, _size, "bound of each spool (flows, Zeek logs)"),
    Setting("zeek_log_dir", "/zeek/logs", _path, "Zeek's log directory; empty: do not ship Zeek logs"),
    Setting("state_dir", "/var/lib/pyhunt", _path, "spool, dead letters and checkpoints"),
    Setting("http_port", 9108, _int_range(0, 65535),
            "TCP port of /healthz, /readyz, /metrics (0: any free port, printed at start)"),
    Setting("http_address", "0.0.0.0", _text, "address of the HTTP endpoints"),
    Setting("workers", 1, _int_range(1, 64), "capture worker processes (PACKET_FANOUT hash when > 1)"),
    Setting("fanout_group", 4242, _int_range(0, 65535), "PACKET_FANOUT group id of the workers"),
    Setting("bpf_filter", None, _bpf, "BPF filter of the capture (tcpdump syntax)"),
    Setting("ring_block_size", 1 << 18, _size, "AF_PACKET TPACKET_V3 ring block size (a power of two)"),
    Setting("ring_blocks", 256, _int_range(2, 65536), "AF_PACKET ring blocks per worker"),
    Setting("local_nets", (), _nets, "local networks (CIDRs) for network.direction and local_orig/resp"),
    Setting("cid_seed", 0, _int_range(0, 65535), "Community ID seed"),
    Setting("vlan_key", True, _bool, "key flows by VLAN ids (false: Zeek's default key, the 5-tuple alone)"),
    Setting("tunnels", "zeek", _tunnels,
            "zeek: report tunnels as Zeek does; strip: remove them silently (mirroring)"),
    Setting("capacity", 1 << 20, _int_range(1, 1 << 30), "flow table capacity (per worker)"),
    Setting("active_timeout", 600.0, _seconds0, "period of interim updates of long flows (0: none)"),
    Setting("grace_seconds", 25.0, _seconds, "after SIGTERM, time to flush before exiting"),
    Setting("observer", None, _text, "observer.hostname in documents (default: the host name)"),
    Setting("config", None, _path, "path of an optional TOML config file"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class SensorConfig:
    """Effective settings (attributes named as SETTINGS) and where each came from."""
    values: dict[str, Any]
    sources: dict[str, str]   # name -> "env", "file" or "default"

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def observer_name(self) -> str:
        return self.values["observer"] or socket.gethostname()

    def es_settings(self, spool: str, dead_letter: str):
        """pyhunt.sinks.elasticsearch.ESSettings for one writer (each writer has its own spool)."""
        from pyhunt.sinks.elasticsearch import ESSettings
        v = self.values
        return ESSettings(url=v["es_url"], username=v["es_username"], password=v["es_password"],
                          api_key=v["es_api_key"], ca_certs=v["es_ca_certs"], verify_certs=v["es_verify_certs"],
                          namespace=v["es_namespace"], batch_bytes=v["es_batch_bytes"],
                          concurrency=v["es_concurrency"], max_retries=v["es_max_retries"],
                          timeout=v["es_timeout"], spool=spool, spool_max_bytes=v["es_spool_max_bytes"],
                          dead_letter=dead_letter)


def _read_file(path: str) -> tuple[dict[str, str], list[str]]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        return {}, [f"PYHUNT_CONFIG: cannot read {path}: {exc.strerror or exc}"]
    except tomllib.TOMLDecodeError as exc:
        return {}, [f"PYHUNT_CONFIG: {path} is not valid TOML: {exc}"]
    out, problems = {}, []
    for key, value in data.items():
        s = _BY_NAME.get(key)
        if s is None or key == "config":
            problems.append(f"{path}: unknown setting {key!r} (settings: docs/sensor-config.md)")
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            text = str(value)
        elif isinstance(value, list) and key == "local_nets" and all(isinstance(x, str) for x in value):
            text = ",".join(value)
        else:
            problems.append(f"{path}: {key}: expected a string or a number, not {type(value).__name__}")
            continue
        out[key] = text
    return out, problems


def load_config(env: Mapping[str, str] | None = None, config_file: str | None = None) -> SensorConfig:
    """The effective configuration; ConfigError listing every problem if it cannot work."""
    env = os.environ if env is None else env
    problems: list[str] = []
    raw_env = {s.name: env[s.env] for s in SETTINGS if env.get(s.env, "") != ""}
    path = config_file or raw_env.get("config")
    from_file: dict[str, str] = {}
    if path:
        from_file, problems = _read_file(path)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if s.name in raw_env:
            text, src, where = raw_env[s.name], "env", s.env
        elif s.name in from_file:
            text, src, where = from_file[s.name], "file", f"{path}: {s.name}"
        else:
            values[s.name], sources[s.name] = s.default, "default"
            continue
        if s.name == "config":
            values[s.name], sources[s.name] = path, ("env" if config_file is None else "option")
            continue
        if s.name == "zeek_log_dir" and text.strip() in ("", "-"):
            values[s.name], sources[s.name] = "", src
            continue
        try:
            values[s.name] = s.parse(text)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            values[s.name] = s.default
        sources[s.name] = src
    if path and config_file is not None:
        values["config"], sources["config"] = path, "option"
    # settings that only make sense together
    if values["es_url"] is None:
        problems.append(f"{_BY_NAME['es_url'].env}: required (where to send flows and Zeek logs), "
                        "e.g. http://elasticsearch:9200")
    elif values["es_ca_certs"] and not str(values["es_url"]).startswith("https://"):
        problems.append(f"{_BY_NAME['es_ca_certs'].env}: needs an https:// {_BY_NAME['es_url'].env}")
    if values["es_password"] and not values["es_username"]:
        problems.append(f"{_BY_NAME['es_password'].env}: set without {_BY_NAME['es_username'].env}")
    if values["es_api_key"] and values["es_username"]:
        problems.append(f"{_BY_NAME['es_api_key'].env} and {_BY_NAME['es_username'].env}: use one of them")
    bs = values["ring_block_size"]
    if bs & (bs - 1) or bs < 4096:
        problems.append(f"{_BY_NAME['ring_block_size'].env}: must be a power of two of at least 4096, not {bs}")
    if values["mode"] != "capture" and values["workers"] > 1:
        problems.append(f"{_BY_NAME['workers'].env}: more than one worker needs mode capture "
                        "(a UDP listener is one socket)")
    if values["mode"] != "capture" and values["bpf_filter"]:
        problems.append(f"{_BY_NAME['bpf_filter'].env}: applies to mode capture only")
    if problems:
        raise ConfigError(problems)
    return SensorConfig(values, sources)


def describe(cfg: SensorConfig) -> str:
    """The effective configuration, one `NAME=value  (source)` line per setting, secrets hidden."""
    lines = []
    for s in SETTINGS:
        v = cfg.values[s.name]
        if v is None:
            text = ""
        elif s.secret:
            text = "(set)"
        elif isinstance(v, tuple):
            text = ",".join(v)
        elif isinstance(v, bool):
            text = "true" if v else "false"
        else:
            text = str(v)
        lines.append(f"{s.env}={text}".ljust(48) + f"  # {cfg.sources[s.name]}")
    return "\n".join(lines) + "\n"
