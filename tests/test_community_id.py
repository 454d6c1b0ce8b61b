"""Community ID v1: every entry of the spec's baselines, per tuple and per flow."""
from __future__ import annotations

import base64
import ipaddress
import json

import pytest

from conftest import shared_path
from pyhunt import FlowMeter, _ext
from pyhunt.summary import addr_text


def _baseline(name: str) -> list[dict]:
    return json.loads(shared_path("community-id", "baseline", name).read_text())


def _cid(entry: dict, seed: int) -> str:
    s, d = ipaddress.ip_address(entry["saddr"]), ipaddress.ip_address(entry["daddr"])
    return _ext.community_id(s.version, entry["proto"], s.packed, d.packed, entry.get("sport", 0) or 0,
                             entry.get("dport", 0) or 0, seed)


@pytest.mark.parametrize("name,seed", [("baseline_deflt.json", 0), ("baseline_seed1.json", 1)])
def test_every_baseline_tuple(name, seed):
    entries = _baseline(name)
    assert entries
    wrong = [(e, _cid(e, seed)) for e in entries if _cid(e, seed) != e["communityid"]]
    assert not wrong, f"{len(wrong)}/{len(entries)} mismatches, e.g. {wrong[:3]}"


def test_hex_baseline_digests():
    entries = _baseline("baseline_nob64.json")
    for e in entries:
        digest = base64.b64decode(_cid(e, 0)[2:])
        assert "1:" + digest.hex() == e["communityid"], e


def test_seed_changes_the_id():
    e = _baseline("baseline_deflt.json")[0]
    assert _cid(e, 0) != _cid(e, 1)


@pytest.mark.parametrize("name,seed", [("baseline_deflt.json", 0), ("baseline_seed1.json", 1)])
def test_per_flow_from_combined_capture(name, seed):
    """Both directions of every flow in combined.pcap.gz carry the baseline's ID."""
    pcap = shared_path("community-id", "pcaps", "combined.pcap.gz")
    meter = FlowMeter(cid_seed=seed, ignore_checksums=True)
    by_tuple: dict[tuple, set[str]] = {}
    for batch in meter.read(str(pcap)):
        for r in batch.to_numpy():
            v = int(r["ip_version"])
            o, d = addr_text(r["orig_h"], v), addr_text(r["resp_h"], v)
            cid = r["community_id"].decode()
            for k in ((o, d, int(r["orig_p"]), int(r["resp_p"])), (d, o, int(r["resp_p"]), int(r["orig_p"]))):
                by_tuple.setdefault((int(r["proto"]), *k), set()).add(cid)
    assert not meter.errors
    entries = _baseline(name)
    for e in entries:
        key = (e["proto"], str(ipaddress.ip_address(e["saddr"])), str(ipaddress.ip_address(e["daddr"])),
               e.get("sport", 0) or 0, e.get("dport", 0) or 0)
        assert key in by_tuple, f"no flow for baseline tuple {key}"
        assert by_tuple[key] == {e["communityid"]}, key
