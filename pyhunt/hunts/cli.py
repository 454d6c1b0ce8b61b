"""``python -m pyhunt hunt NAME`` and ``python -m pyhunt report``: options, sources and output."""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_hunt_commands", "run_hunt_command"]


def _threshold(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return name.strip().replace("-", "_"), value.strip()


def _limit(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return v


def _common(p: argparse.ArgumentParser) -> None:
    from pyhunt.escli import add_es_arguments
    p.add_argument("--input", "-i", nargs="+", action="extend", metavar="FILE", default=[],
                   help="offline input: pyhunt NDJSON (ecs or zeek-json) and Zeek conn.log/dns.log, JSON or TSV, "
                   "gzip'd or not")
    p.add_argument("--since", metavar="WHEN", help="only data from this time on: ISO 8601, epoch seconds, or a "
                   "duration back from now such as 24h or 7d")
    p.add_argument("--until", metavar="WHEN", help="only data before this time (same forms as --since)")
    p.add_argument("--local-nets", metavar="CIDRS", help="comma-separated local networks for rare-destinations and "
                   "exfil (default 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7)")
    p.add_argument("-t", "--threshold", action="append", type=_threshold, default=[], metavar="NAME=VALUE",
                   help="set a hunt's threshold, e.g. -t min_connections=10 (repeatable; names in docs/hunting.md)")
    p.add_argument("--limit", type=_limit, default=50, metavar="N", help="findings per hunt (default 50)")
    add_es_arguments(p)


def add_hunt_commands(sub) -> None:
    """The `hunt` and `report` subcommands."""
    from pyhunt.hunts import HUNTS
    names = "\n".join(f"  {n:<18} {m.DESCRIPTION}" for n, m in HUNTS.items())
    h = sub.add_parser("hunt", help="run a canned hunt over flows and Zeek logs",
                       description="Run one hunt over Elasticsearch (--es: the flow alias and Zeek dns indices of "
                       "--es-namespace, with aggregations) or over local files (--input). Findings are ranked by "
                       "score (0-1) with a level (low, medium, high) and the flow ids and Community IDs to pivot on.",
                       epilog="hunts:\n" + names + "\n\nthresholds (-t NAME=VALUE) and scores: docs/hunting.md",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_argument("name", choices=list(HUNTS), metavar="NAME", help="the hunt: " + ", ".join(HUNTS)
                   + " (name it before --input, which takes several files)")
    h.add_argument("--format", "-f", choices=("table", "json"), default="table",
                   help="table (default) or json (one object with the findings)")
    h.add_argument("--min-level", choices=("low", "medium", "high"), default="low",
                   help="leave out findings below this level (default low: all)")
    _common(h)
    r = sub.add_parser("report", help="write a self-contained HTML report of every hunt",
                       description="Run every hunt and write one HTML file (inline SVG and CSS, no external "
                       "assets) with the findings, beacon inter-arrival histograms and timelines, top talkers "
                       "and the conn_state breakdown.")
    r.add_argument("-o", "--output", metavar="FILE", required=True, help="the HTML file to write")
    r.add_argument("--title", default="pyhunt hunting report", help="the report's title")
    _common(r)


def _params(args):
    from pyhunt.cli import UsageError
    from pyhunt.hunts import HUNTS
    from pyhunt.hunts.common import HuntParams, LocalNets
    from pyhunt.hunts.timeutil import parse_when
    p = HuntParams(limit=args.limit)
    try:
        p.since = parse_when(args.since) if args.since else None
        p.until = parse_when(args.until) if args.until else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.local_nets:
        try:
            p.local_nets = LocalNets([c.strip() for c in args.local_nets.split(",") if c.strip()])
        except ValueError as exc:
            raise UsageError(f"--local-nets: {exc}") from None
    names = [args.name] if getattr(args, "name", None) else list(HUNTS)
    known = {k: v[0] for n in names for k, v in HUNTS[n].THRESHOLDS.items()}
    for k, v in args.threshold:
        if k not in known:
            raise UsageError(f"unknown threshold {k!r} for {', '.join(names)}; known: {', '.join(sorted(known))}")
        if isinstance(known[k], str):
            p.thresholds[k] = v
            continue
        try:
            p.thresholds[k] = float(v)
        except ValueError:
            raise UsageError(f"threshold {k} must be a number: {v!r}") from None
    if k_tiers := p.thresholds.get("tiers"):
        from pyhunt.hunts.long_connections import tiers
        try:
            tiers(p)
        except ValueError:
            raise UsageError(f"threshold tiers must be durations like 1h,4h,8h,12h: {k_tiers!r}") from None
    return p


def _source(args):
    """(source, closer) for --input or --es."""
    from pyhunt.cli import UsageError
    if args.input and args.es:
        raise UsageError("give --input or --es, not both")
    if args.input:
        from pyhunt.hunts.offline import InputError, OfflineSource
        try:
            return OfflineSource(args.input), None
        except InputError as exc:
            raise UsageError(str(exc)) from None
    if not args.es:
        raise UsageError("no data: give --input FILE... or --es URL (or set PYHUNT_ES_URL)")
    try:
        from pyhunt.escli import settings_from_args
        from pyhunt.sinks.elasticsearch import ESConfigError, make_client
    except ImportError as exc:
        raise UsageError(f"--es needs the Elasticsearch client ({exc.name} is missing): pip install 'pyhunt[es]'") \
            from None
    try:
        settings = settings_from_args(args)
        client = make_client(settings)
    except (ESConfigError, OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    from pyhunt.hunts.es import ESSource
    return ESSource(client, settings.namespace), client


def _fmt_time(ts) -> str:
    from pyhunt.hunts.timeutil import iso
    return (iso(ts) or "-")[:19].replace("T", " ")


def format_table(name: str, findings) -> str:
    if not findings:
        return f"{name}: no findings\n"
    rows = [("score", "level", "key", "count", "first seen", "last seen", "summary")]
    for f in findings:
        rows.append((f"{f.score:.3f}", f.level, f.key, str(f.count), _fmt_time(f.first_seen), _fmt_time(f.last_seen),
                     f.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    out = [f"{name}: {len(findings)} findings"]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6])
    out.append("pivot: flow ids (event.id / Zeek uid) and Community IDs per finding with --format json")
    return "\n".join(out) + "\n"


def run_hunt_command(args) -> int:
    """`hunt` or `report`: 0 when done, 1 when the data source failed."""
    from pyhunt.cli import EXIT_OK, EXIT_RUNTIME
    from pyhunt.hunts import HUNTS, run
    params = _params(args)
    source, client = _source(args)
    try:
        if args.command == "hunt":
            findings = run(args.name, source, params)
            order = ("low", "medium", "high")
            findings = [f for f in findings if order.index(f.level) >= order.index(args.min_level)]
            if args.format == "json":
                json.dump({"hunt": args.name, "source": source.describe(),
                           "findings": [f.to_dict() for f in findings]}, sys.stdout, indent=1)
                sys.stdout.write("\n")
            else:
                sys.stdout.write(format_table(args.name, findings))
        else:
            from pyhunt.hunts.overview import overview
            from pyhunt.hunts.report import write_report
            results = {n: run(n, source, params) for n in HUNTS}
            ov = overview(source, params.since, params.until)
            try:
                with open(args.output, "w", encoding="utf-8") as f:
                    f.write(write_report(results, ov, title=args.title, source=source.describe(), params=params))
            except OSError as exc:
                from pyhunt.cli import UsageError
                raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            n_high = sum(f.level == "high" for fs in results.values() for f in fs)
            sys.stderr.write(f"report: {sum(map(len, results.values()))} findings ({n_high} high) in {args.output}\n")
        for w in dict.fromkeys(getattr(source, "warnings", [])):
            sys.stderr.write(f"pyhunt: warning: {w}\n")
        if getattr(source, "bad_lines", 0):
            sys.stderr.write(f"pyhunt: warning: {source.bad_lines:,} input lines were not flows or DNS queries\n")
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - input and Elasticsearch failures become one line
        from pyhunt.hunts.es import PartialResults
        from pyhunt.hunts.offline import InputError
        if isinstance(exc, (PartialResults, InputError)):
            sys.stderr.write(f"pyhunt: error: {'Elasticsearch: ' if isinstance(exc, PartialResults) else ''}{exc}\n")
            return EXIT_RUNTIME
        try:
            from elasticsearch import ApiError, TransportError
            from pyhunt.sinks.elasticsearch import describe_error
        except ImportError:
            raise exc from None
        if isinstance(exc, (ApiError, TransportError)):
            sys.stderr.write(f"pyhunt: error: Elasticsearch: {describe_error(exc)}\n")
            return EXIT_RUNTIME
        raise
    finally:
        if client is not None:
            client.close()
