"""The Zeek site policy (zeek_scripts/): parses with Zeek's grammar, follows Zeek's script style.

zeekscript (PyPI, Zeek's own formatter and parser, a tree-sitter grammar of the Zeek language) checks
syntax and layout without a Zeek binary; names and types are only checked by Zeek itself (see
docs/deploy.md for the `zeek -a` check before a rollout). Tests that need zeekscript skip when it is
absent, except in CI (CI=true), where .ci/deploy_deps.sh installs it.
"""
from __future__ import annotations

import importlib
import io
import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS_DIR = ROOT / "zeek_scripts"
SCRIPTS = sorted(SCRIPTS_DIR.glob("*.zeek"))
HUNTING = [p for p in SCRIPTS if p.name.startswith("pyhunt-")]
SENSOR_DOC = ROOT / "docs" / "sensor-config.md"


def _require(module: str, package: str):
    """Import *module*; skip without it, except in CI (CI=true) where it must be installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{package} is not installed (pip install {package}, or bash .ci/deploy_deps.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ": it is required in CI")
        pytest.skip(reason)


def _zeekscript():
    return _require("zeekscript", "zeekscript")


def parse_errors(source: bytes) -> str | None:
    """zeekscript's description of the first syntax error in *source*, or None when it parses."""
    zeekscript = _zeekscript()
    script = zeekscript.Script(io.BytesIO(source))
    try:
        ok = script.parse()
    except zeekscript.error.Error as e:  # the whole input failed to parse
        return str(e) or "unparseable"
    if ok:
        return None
    line, lineno, msg = script.get_error()
    return f"{msg} (line {lineno}: {line!r})"


def export_block(text: str) -> list[str]:
    """The lines of the file's ``export { ... }`` block (zeek-format layout: ``}`` in column 0)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip() == "export {")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].rstrip() == "}")
    return lines[start + 1:end]


_DECL = re.compile(r"^\s*(global|const|option|type)\s+\w+|^\s*redef enum Log::ID \+= \{")
_FIELD = re.compile(r"^\s+\w+:\s")
_ENUM_VALUE = re.compile(r"^\s+[A-Za-z_]\w*,?\s*$")


def undocumented_exports(text: str) -> list[str]:
    """Declarations in the export block without a ``##`` comment (above, or ``##<`` after)."""
    missing, prev, in_enum = [], "", False
    for line in export_block(text):
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"redef enum \S+ \+= \{$", stripped):
            in_enum = True
        elif stripped.startswith("}"):
            in_enum = False
        named = (_DECL.match(line) or (_FIELD.match(line) and not stripped.startswith("##"))
                 or (in_enum and _ENUM_VALUE.match(line)))
        if named and not prev.startswith("##") and "##<" not in line:
            missing.append(stripped)
        prev = stripped
    return missing


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(path):
    err = parse_errors(path.read_bytes())
    assert err is None, f"{path.name}: {err}"


@pytest.mark.parametrize("snippet", [
    b"event zeek_init( { print 1; }",                      # unbalanced parenthesis
    b"module PyHunt;\nexport {\n\tconst x = 1 &redef\n",   # missing ';' and '}'
    b"redef record Conn::Info += { a: count &log }",       # missing ';' after the field
], ids=["paren", "unterminated-export", "record-field"])
def test_broken_snippet_is_reported(snippet):
    """The parse check can fail: zeekscript reports these syntax errors."""
    assert parse_errors(snippet) is not None
    # and the check is not trivially failing: a correct snippet passes
    assert parse_errors(b"event zeek_init()\n\t{\n\tprint 1;\n\t}\n") is None


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_is_zeek_format_clean(path):
    """Layout is Zeek's own: zeek-format (zeekscript) leaves every script unchanged."""
    zeekscript = _zeekscript()
    script = zeekscript.Script(path)
    assert script.parse()
    out = io.BytesIO()
    script.format(out)
    assert out.getvalue() == path.read_bytes(), (
        f"{path.name} is not in zeek-format layout: run zeek-format -i zeek_scripts/{path.name}")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_header_comment(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("##! "), f"{path.name} must start with a ##! header"


@pytest.mark.parametrize("path", HUNTING, ids=lambda p: p.name)
def test_module_export_and_docs(path):
    text = path.read_text()
    assert re.search(r"^module PyHunt;$", text, re.M), f"{path.name}: module PyHunt; missing"
    assert undocumented_exports(text) == [], f"{path.name}: exported items without ## comment"


def test_undocumented_export_is_reported():
    """The ## check can fail."""
    text = "##! x\nmodule PyHunt;\n\nexport {\n\t## documented\n\tconst a = 1 &redef;\n\n\tconst b = 2 &redef;\n}\n"
    assert undocumented_exports(text) == ["const b = 2 &redef;"]


@pytest.mark.parametrize("path", HUNTING, ids=lambda p: p.name)
def test_explicit_loads(path):
    """Each script loads what it uses rather than relying on local.zeek's order."""
    text = path.read_text()
    loads = set(re.findall(r"^@load (\S+)$", text, re.M))
    uses = {"NOTICE(": "base/frameworks/notice", "SumStats::": "base/frameworks/sumstats",
            "Conn::Info": "base/protocols/conn", "DNS::": "base/protocols/dns",
            "ConnPolling::": "base/protocols/conn/polling", "Site::": "base/utils/site",
            "duration_to_mins_secs": "base/utils/time"}
    for token, script in uses.items():
        if token in text:
            assert script in loads, f"{path.name} uses {token} without @load {script}"


def test_local_loads_every_script():
    text = (SCRIPTS_DIR / "local.zeek").read_text()
    relative = re.findall(r"^@load \./(\S+)$", text, re.M)
    for name in relative:
        assert (SCRIPTS_DIR / f"{name}.zeek").is_file(), f"local.zeek loads ./{name}, which is missing"
    assert {f"{n}.zeek" for n in relative} == {p.name for p in HUNTING}
    for needed in ("LogAscii::use_json = T", "policy/protocols/conn/community-id-logging",
                   "policy/protocols/conn/vlan-logging"):
        assert needed in text


def test_kustomization_lists_every_script():
    """One source of truth: the ConfigMap generator lists exactly the folder's .zeek files."""
    yaml = _require("yaml", "PyYAML")
    kust = yaml.safe_load((SCRIPTS_DIR / "kustomization.yaml").read_text())
    (gen,) = kust["configMapGenerator"]
    assert gen["name"] == "pyhunt-zeek-scripts"
    assert sorted(gen["files"]) == sorted(p.name for p in SCRIPTS)
    assert "disableNameSuffixHash" not in str(kust), "the hash suffix is what rolls the pods"


def test_environment_variables_are_documented():
    """Every variable the scripts read is in docs/sensor-config.md and in the k8s settings."""
    yaml = _require("yaml", "PyYAML")
    doc = SENSOR_DOC.read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", doc, re.M))
    base = yaml.safe_load((ROOT / "k8s" / "base" / "kustomization.yaml").read_text())
    (gen,) = [g for g in base["configMapGenerator"] if g["name"] == "pyhunt-sensor-config"]
    configured = {lit.split("=", 1)[0] for lit in gen["literals"]}
    read = set()
    for path in SCRIPTS:
        read |= set(re.findall(r'getenv\(\s*"([A-Z_]+)"', path.read_text()))
    assert read, "the scripts read no environment variable?"
    assert read <= documented, f"not in docs/sensor-config.md: {sorted(read - documented)}"
    assert read <= configured, f"not in the pyhunt-sensor-config ConfigMap: {sorted(read - configured)}"


def test_community_id_seed_default_matches_pyhunt():
    """Zeek's Community ID seed defaults to pyhunt's default (0), so the two join."""
    text = (SCRIPTS_DIR / "pyhunt-sensor.zeek").read_text()
    assert re.search(r'redef CommunityID::seed = env_cid_seed == "" \? 0 :', text)
