#!/usr/bin/env python3
"""Elasticsearch shipping: pyhunt's bulk writer vs elasticsearch.helpers.streaming_bulk, same node, same run.

Measures, on the same documents into the same local node (scripts/es_node.py, or --es URL):
  * end to end: `python -m pyhunt replay CAPTURE --es URL` (documents/s, wall time);
  * client CPU seconds per million documents: pyhunt's writer alone (flows already in memory as
    batches: building bodies, sending, reading responses) and streaming_bulk fed the same ECS
    documents as Python dicts (serialization, chunking, sending, responses), both with
    time.process_time() (all threads);
  * streaming_bulk's end-to-end documents/s.
Targets (issue #4): pyhunt's CPU per document <= 1/5 of the helpers'; throughput >= theirs.

    python3 benchmarks/bench_es.py [--flows 50000] [--es URL]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
GEN = ROOT.parent / "shared" / "bench" / "gen_pcap.py"


def _load(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def make_capture(flows: int, directory: str) -> str:
    out = os.path.join(directory, f"bench-es-{flows}.pcap")
    if GEN.exists():  # the team's realistic mixed-traffic generator
        subprocess.run([sys.executable, str(GEN), "--flows", str(flows), "--packets", str(flows * 10),
                        "--seed", "1", "-o", out], check=True, capture_output=True)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        _load("es_fixture", ROOT / "tests" / "es_fixture.py").write_udp_capture(out, flows)
    return out


def reset(client, ns: str) -> None:
    client.indices.delete(index=f"pyhunt-flow-{ns}-*", ignore_unavailable=True, allow_no_indices=True)


def count(client, ns: str) -> int:
    client.indices.refresh(index=f"pyhunt-flow-{ns}-*")
    return client.count(index=f"pyhunt-flow-{ns}-*")["count"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=50000)
    ap.add_argument("--es", metavar="URL", help="use this node instead of starting one")
    a = ap.parse_args()
    from elasticsearch import Elasticsearch
    from elasticsearch.helpers import streaming_bulk
    from pyhunt import FlowMeter
    from pyhunt.sinks.elasticsearch import BulkWriter, ESSettings, install_templates
    from pyhunt.sinks.templates import index_name

    tmp = tempfile.mkdtemp(prefix="pyhunt-bench-es-", dir="/tmp")
    os.chmod(tmp, 0o755)
    node = None
    if a.es:
        url = a.es
    else:
        node = _load("es_node", ROOT / "scripts" / "es_node.py").ESNode(os.path.join(tmp, "node"))
        url = node.start()
    try:
        client = Elasticsearch(url, request_timeout=120)
        cap = make_capture(a.flows, tmp)
        for ns in ("benche2e", "benchw", "benchh"):
            reset(client, ns)
            install_templates(client, ns, replicas=0)
        results = {}

        # 1. end to end, the CLI
        ru0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "pyhunt", "replay", "-q", cap, "--es", url, "--es-namespace",
                            "benche2e", "--es-spool", os.path.join(tmp, "spool"), "--observer", "bench"],
                           cwd=ROOT, capture_output=True)
        wall = time.perf_counter() - t
        assert r.returncode == 0, r.stderr.decode()
        n = count(client, "benche2e")
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime  # the whole process: capture, flows, ES
        results["pyhunt replay --es (end to end)"] = (n, wall, cpu)

        # the same flows in memory: batches for pyhunt's writer, dicts for the helpers
        meter = FlowMeter()
        batches = [(b.to_numpy(), b.to_ndjson("ecs", observer="bench")) for b in meter.read(cap)]
        docs = [json.loads(line) for _, nd in batches for line in nd.splitlines()]
        ids = [d["event"]["id"] for d in docs]

        # 2. pyhunt's writer alone
        s = ESSettings(url=url, namespace="benchw", spool=os.path.join(tmp, "spool-w"),
                       dead_letter=os.path.join(tmp, "dead-w"))
        c0, t = time.process_time(), time.perf_counter()
        w = BulkWriter(s).open()
        for recs, nd in batches:
            w.write(recs, nd)
        st = w.close()
        results["pyhunt BulkWriter"] = (st.sent, time.perf_counter() - t, time.process_time() - c0)

        # 3. streaming_bulk fed the same documents as dicts
        def actions():
            for d, i in zip(docs, ids):
                day = d["@timestamp"][:10].replace("-", ".")
                yield {"_op_type": "index", "_index": index_name("benchh", day), "_id": i, "_source": d}
        c0, t = time.process_time(), time.perf_counter()
        ok = sum(1 for good, _ in streaming_bulk(client, actions(), chunk_size=5000, max_chunk_bytes=8 * 1024 * 1024,
                                                 raise_on_error=False) if good)
        results["helpers.streaming_bulk (dicts)"] = (ok, time.perf_counter() - t, time.process_time() - c0)
        assert count(client, "benchw") == count(client, "benchh") == n == len(docs), "document counts differ"

        print(f"Elasticsearch {url}, {n:,} flow documents ({os.path.getsize(cap) / 1e6:.0f} MB capture, "
              f"{sum(len(nd) for _, nd in batches) / len(docs):.0f} B/doc)")
        print(f"{'':34} {'docs/s':>10} {'wall s':>8} {'client CPU s / M docs':>22}")
        for name, (k, wall, cpu) in results.items():
            print(f"{name:34} {k / wall:10,.0f} {wall:8.2f} {cpu / k * 1e6 if cpu is not None else float('nan'):22.1f}")
        pw, hw = results["pyhunt BulkWriter"], results["helpers.streaming_bulk (dicts)"]
        print(f"CPU per document, pyhunt / helpers: {pw[2] / pw[0] / (hw[2] / hw[0]):.3f} (target <= 0.2); "
              f"throughput, pyhunt / helpers: {(pw[0] / pw[1]) / (hw[0] / hw[1]):.2f} (target >= 1)")
        client.close()
    finally:
        if node is not None:
            node.stop()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
