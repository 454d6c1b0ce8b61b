"""The sensor's configuration: environment over file over defaults, validation, --check-config."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT, run_cli
from pyhunt.sensor.config import SETTINGS, ConfigError, describe, load_config

DOC = (ROOT / "docs" / "sensor-config.md").read_text()
BASE = {"PYHUNT_ES_URL": "http://127.0.0.1:9200"}


def _doc_defaults() -> dict[str, str | None]:
    out = {}
    for name, default in re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", DOC, re.M):
        m = re.fullmatch(r"`([^`]*)`", default.strip())
        out[name] = m.group(1) if m else None
    return out


def test_every_setting_is_documented_with_its_default():
    doc = _doc_defaults()
    for s in SETTINGS:
        assert s.env in doc, f"{s.env} is not in docs/sensor-config.md"
        if doc[s.env] is None:
            assert s.default in (None, ()), f"{s.env}: the doc gives no default, the code has {s.default!r}"
        else:
            assert s.parse(doc[s.env]) == s.default, f"{s.env}: doc {doc[s.env]!r}, code {s.default!r}"


def test_every_setting_is_in_help():
    helptext = run_cli("sensor", "--help").stdout.decode()
    missing = [s.env for s in SETTINGS if s.env not in helptext]
    assert not missing


def test_defaults():
    cfg = load_config(BASE)
    assert cfg.interface == "cloudlens0" and cfg.mode == "capture" and cfg.http_port == 9108
    assert cfg.sources["interface"] == "default" and cfg.sources["es_url"] == "env"
    assert cfg.zeek_log_dir == "/zeek/logs" and cfg.local_nets == ()


def test_env_wins_over_file_and_empty_means_unset(tmp_path):
    f = tmp_path / "pyhunt.toml"
    f.write_text('interface = "ens5"\nworkers = 3\nlocal_nets = ["10.0.0.0/8", "fd00::/8"]\n'
                 'es_verify_certs = false\nhttp_port = 9200\n')
    cfg = load_config({**BASE, "PYHUNT_CONFIG": str(f), "PYHUNT_WORKERS": "2", "PYHUNT_INTERFACE": ""})
    assert cfg.interface == "ens5" and cfg.sources["interface"] == "file"
    assert cfg.workers == 2 and cfg.sources["workers"] == "env"
    assert cfg.local_nets == ("10.0.0.0/8", "fd00::/8")
    assert cfg.es_verify_certs is False and cfg.http_port == 9200


def test_every_problem_is_reported_on_its_own_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('interfase = "eth0"\nworkers = [1]\n')
    with pytest.raises(ConfigError) as ei:
        load_config({"PYHUNT_CONFIG": str(f), "PYHUNT_MODE": "tap", "PYHUNT_HTTP_PORT": "70000",
                     "PYHUNT_LOCAL_NETS": "10.0.0.0/8,banana", "PYHUNT_RING_BLOCK_SIZE": "3000",
                     "PYHUNT_INTERFACE": "eth0/1"})
    text = "\n".join(ei.value.problems)
    for needle in ("unknown setting 'interfase'", "workers: expected a string or a number",
                   "PYHUNT_MODE: must be one of", "PYHUNT_HTTP_PORT: must be 0-65535",
                   "PYHUNT_LOCAL_NETS: not a CIDR network: 'banana'", "PYHUNT_RING_BLOCK_SIZE",
                   "PYHUNT_INTERFACE: not an interface name", "PYHUNT_ES_URL: required"):
        assert needle in text, (needle, text)
    assert len(ei.value.problems) == 8


def test_bad_toml_and_missing_file(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text("interface = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({**BASE, "PYHUNT_CONFIG": str(f)})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({**BASE, "PYHUNT_CONFIG": str(tmp_path / "absent.toml")})


def test_ca_file_must_be_pem_and_https(tmp_path):
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a PEM"):
        load_config({"PYHUNT_ES_URL": "https://es:9200", "PYHUNT_ES_CA_CERTS": str(bad)})
    good = tmp_path / "good.crt"
    good.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="needs an https"):
        load_config({"PYHUNT_ES_URL": "http://es:9200", "PYHUNT_ES_CA_CERTS": str(good)})
    assert load_config({"PYHUNT_ES_URL": "https://es:9200", "PYHUNT_ES_CA_CERTS": str(good)}).es_ca_certs


def test_listener_modes_exclude_capture_only_settings():
    with pytest.raises(ConfigError, match="PYHUNT_WORKERS"):
        load_config({**BASE, "PYHUNT_MODE": "vxlan-listener", "PYHUNT_WORKERS": "2"})
    with pytest.raises(ConfigError, match="PYHUNT_BPF_FILTER"):
        load_config({**BASE, "PYHUNT_MODE": "geneve-listener", "PYHUNT_BPF_FILTER": "tcp"})


def test_describe_hides_secrets():
    cfg = load_config({**BASE, "PYHUNT_ES_USERNAME": "elastic", "PYHUNT_ES_PASSWORD": "hunter2"})
    text = describe(cfg)
    assert "hunter2" not in text and "PYHUNT_ES_PASSWORD=(set)" in text
    assert "PYHUNT_ES_USERNAME=elastic" in text
    assert len(text.splitlines()) == len(SETTINGS)


def test_check_config_command(tmp_path):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYHUNT_")}
    r = subprocess.run([sys.executable, "-m", "pyhunt", "sensor", "--check-config"], cwd=ROOT,
                       env={**env, **BASE, "PYHUNT_MODE": "vxlan-listener"}, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"PYHUNT_MODE=vxlan-listener" in r.stdout and b"# env" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pyhunt", "sensor", "--check-config"], cwd=ROOT,
                       env={**env, "PYHUNT_WORKERS": "many"}, capture_output=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.decode().splitlines()
    assert any("PYHUNT_WORKERS: not an integer" in ln for ln in lines)
    assert any("PYHUNT_ES_URL: required" in ln for ln in lines)
    assert b"Traceback" not in r.stderr


def test_every_metric_is_documented():
    from pyhunt.sensor.http import METRICS
    for name, typ, _, labels in METRICS:
        m = re.search(rf"^\| `{name}` \| (\w+) \| ([^|]*) \|", DOC, re.M)
        assert m, f"{name} is not in docs/sensor-config.md"
        assert m.group(1) == typ
        assert set(re.findall(r"`(\w+)`", m.group(2))) == set(labels), name
