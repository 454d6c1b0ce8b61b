"""The command line: `python -m pyhunt replay ...`.

Errors are one line on stderr with exit status 2 (usage or configuration) or 1
(runtime failure, e.g. a corrupt capture); never a traceback for expected failures.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import time
from typing import BinaryIO, Sequence

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
MAX_SECONDS = 10 * 365 * 86400.0  # timeouts are int64 nanoseconds in the engine


class UsageError(Exception):
    """A bad option value: reported as one line, exit status 2."""


def _sample_path() -> str:
    # the package is installed as files (setup.py), so this is the resource's path
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sample.pcap")


def _ports(text: str) -> list[int]:
    if text.strip().lower() in ("", "none"):
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port or port range: {part!r}") from None
        if not (0 <= a <= b <= 65535):
            raise argparse.ArgumentTypeError(f"port out of range: {part!r}")
        out.extend(range(a, b + 1))
    return out


def _bare(text: str) -> tuple[list[int], list[int]]:
    from pyhunt.flows import zeek_bare_server_ports
    names = [] if text.strip().lower() == "none" else text.split(",")
    try:
        return zeek_bare_server_ports(names)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _nets(text: str) -> list[str]:
    nets = [t.strip() for t in text.split(",") if t.strip()]
    for n in nets:
        try:
            ipaddress.ip_network(n, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a network in CIDR form: {n!r}") from None
    return nets


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= v <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SECONDS:.0f} seconds: {text!r}")
    return v


def _int_in(lo: int, hi: int | None = None):
    """An argparse type: an integer (any base prefix) between lo and hi."""
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}" if hi is not None
                                             else f"must be at least {lo}")
        return v
    return parse


_seed = _int_in(0, 65535)
_positive = _int_in(1)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


COMMANDS = ("replay", "es", "sensor", "zeek-ship", "kibana", "hunt", "report")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. With ``command`` (the subcommand about to run) only its sub-parser is built:
    the others import modules that command does not need (startup time counts in a replay)."""
    p = _Parser(prog="pyhunt", description="Network threat-hunting sensor: flows with Zeek's conn.log "
                "semantics, Community ID and hunting features, from captures or live traffic.")
    from pyhunt import __version__
    p.add_argument("--version", action="version", version=f"pyhunt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    r = sub.add_parser("replay", help="turn capture files into flows",
                       description="Read pcap/pcapng captures (gzip'd too; '-' = stdin) and write one record per "
                       "flow. With no -o and stdout a terminal, prints a table of the largest flows instead of "
                       "raw records. A summary goes to stderr.",
                       epilog=f"The shipped sample capture: {_sample_path()}")
    r.add_argument("captures", nargs="*", metavar="CAPTURE", help="pcap or pcapng file, gzip'd or not; '-' for stdin")
    r.add_argument("--sample", action="store_true",
                   help="replay the sample capture shipped with pyhunt (made by scripts/make_sample.py)")
    r.add_argument("--format", "-f", choices=("ecs", "zeek-json", "zeek-tsv"), default="ecs",
                   help="ecs: Elastic Common Schema NDJSON (default); zeek-json / zeek-tsv: Zeek conn.log")
    r.add_argument("-o", "--output", metavar="FILE", help="write records here ('-' = stdout)")
    r.add_argument("-C", "--ignore-checksums", action="store_true",
                   help="do not verify IP/TCP/UDP/ICMP checksums (as Zeek's -C)")
    r.add_argument("--cid-seed", type=_seed, default=0, metavar="N", help="Community ID seed (default 0)")
    r.add_argument("--tcp-inactivity", type=_seconds, metavar="S", help="TCP inactivity timeout (default 300)")
    r.add_argument("--udp-inactivity", type=_seconds, metavar="S", help="UDP inactivity timeout (default 60)")
    r.add_argument("--icmp-inactivity", type=_seconds, metavar="S", help="ICMP inactivity timeout (default 60)")
    r.add_argument("--other-inactivity", type=_seconds, metavar="S",
                   help="inactivity timeout of other IP protocols (default 60)")
    r.add_argument("--active-timeout", type=_seconds, metavar="S",
                   help="period of interim updates of long flows (default 600; 0 disables)")
    r.add_argument("--updates", action="store_true",
                   help="also write interim update records (same uid) for flows longer than --active-timeout")
    r.add_argument("--capacity", type=_positive, metavar="N",
                   help="flow table capacity; the least recently active flow is exported early beyond it "
                   "(default 1048576)")
    r.add_argument("--first-n", type=int, choices=range(0, 9), metavar="N",
                   help="packets recorded individually per flow, 0-8 (default 8)")
    r.add_argument("--tcp-server-ports", type=_ports, metavar="LIST",
                   help="likely server ports for TCP direction fixes, e.g. '22,80,8000-8100' or 'none' "
                   "(default: Zeek's likely_server_ports)")
    r.add_argument("--udp-server-ports", type=_ports, metavar="LIST", help="the same for UDP")
    r.add_argument("--zeek-bare", type=_bare, metavar="SCRIPTS",
                   help="likely server ports as Zeek in bare mode (-b) with these scripts loaded: comma-separated "
                        "protocol names or script paths, e.g. 'dns,http' or 'base/protocols/ssl' ('none': only "
                        "the UDP tunnel ports init-bare registers); sets both port lists")
    r.add_argument("--local-nets", type=_nets, default=[], metavar="CIDRS",
                   help="comma-separated local networks: enable local_orig/local_resp and network.direction")
    r.add_argument("--no-vlan-key", action="store_true",
                   help="do not key flows by VLAN ids, as Zeek's default connection key (the same 5-tuple on two "
                        "VLANs is one flow); by default they are keyed, as Zeek's vlan_fivetuple")
    r.add_argument("--tunnels", choices=("zeek", "strip"), default="zeek",
                   help="zeek: report tunnels as Zeek does (outer UDP tunnel flows, tunnel_parents; default); "
                        "strip: mirroring mode, strip them silently and key flows by the VNI/GRE key")
    r.add_argument("--observer", metavar="NAME", help="observer.hostname in ECS records (default: this host)")
    r.add_argument("-q", "--quiet", action="store_true", help="no summary or progress on stderr")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    from pyhunt.escli import add_es_arguments
    add_es_arguments(r)
    if command in (None, "es"):
        from pyhunt.escli import add_es_command
        add_es_command(sub)
    if command in (None, "sensor"):
        add_sensor_command(sub)
    if command in (None, "zeek-ship"):
        add_zeek_command(sub)
    if command in (None, "kibana"):
        add_kibana_command(sub)
    if command in (None, "hunt", "report"):
        from pyhunt.hunts.cli import add_hunt_commands
        add_hunt_commands(sub)
    return p


def add_kibana_command(sub) -> None:
    k = sub.add_parser("kibana", help="load pyhunt's data views and dashboard into Kibana",
                       description="Import the saved objects shipped with pyhunt (data views for flows and Zeek "
                       "logs, the threat-hunting dashboard) through Kibana's saved objects import API.")
    ksub = k.add_subparsers(dest="kibana_command", metavar="ACTION", parser_class=type(k))
    i = ksub.add_parser("import", help="import the saved objects (objects with the same ids are replaced)")
    i.add_argument("url", metavar="URL", help="Kibana's base URL, e.g. http://localhost:5601")
    i.add_argument("--file", metavar="NDJSON", help="saved objects to import (default: the ones shipped with pyhunt)")
    i.add_argument("--space", metavar="ID", help="Kibana space id (default: the default space)")
    i.add_argument("--api-key", metavar="KEY", default=os.environ.get("PYHUNT_KIBANA_API_KEY"),
                   help="API key, base64 id:key (env PYHUNT_KIBANA_API_KEY)")
    i.add_argument("--username", metavar="USER", default=os.environ.get("PYHUNT_KIBANA_USERNAME"),
                   help="basic-auth user (env PYHUNT_KIBANA_USERNAME)")
    i.add_argument("--password", metavar="PASS", default=os.environ.get("PYHUNT_KIBANA_PASSWORD"),
                   help="basic-auth password (prefer the environment variable PYHUNT_KIBANA_PASSWORD)")
    i.add_argument("--ca-certs", metavar="FILE", help="PEM bundle to verify Kibana's certificate (https)")
    i.add_argument("--no-overwrite", action="store_true", help="keep objects that already exist (default: replace)")
    i.add_argument("--timeout", type=_seconds, default=30.0, metavar="S", help="seconds to wait for Kibana (default 30)")


def kibana(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from pyhunt.kibana import KibanaImportError, import_saved_objects
    if args.kibana_command != "import":
        raise UsageError("name an action: pyhunt kibana import URL")
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"Kibana URL must be http://HOST:PORT or https://...: {args.url!r}")
    if args.api_key and args.username:
        raise UsageError("give --api-key or --username, not both")
    try:
        answer = import_saved_objects(args.url, args.file, api_key=args.api_key, username=args.username,
                                      password=args.password, space=args.space, overwrite=not args.no_overwrite,
                                      ca_file=args.ca_certs, timeout=args.timeout)
    except KibanaImportError as exc:
        sys.stderr.write(f"pyhunt: error: {exc}\n")
        return EXIT_RUNTIME
    print(f"imported {answer.get('successCount', 0)} saved objects into Kibana at {args.url}"
          + (f" (space {args.space})" if args.space else ""))
    return EXIT_OK


def add_sensor_command(sub) -> None:
    from pyhunt.sensor.config import SETTINGS
    rows = []
    for st in SETTINGS:
        default = st.default
        if isinstance(default, tuple):
            default = ",".join(default) or None
        if isinstance(default, bool):
            default = "true" if default else "false"
        rows.append(f"  {st.env:<26} {st.help}" + ("" if default is None else f" (default {default})"))
    s = sub.add_parser("sensor", help="live capture or VXLAN/GENEVE listener + Zeek log shipping to Elasticsearch",
                       description="The container entrypoint: capture the configured interface with AF_PACKET (or "
                       "receive mirrored traffic as VXLAN/GENEVE), export flows and tail Zeek's logs into "
                       "Elasticsearch, serve /healthz, /readyz and /metrics, and flush everything on SIGTERM. "
                       "Configured by PYHUNT_* environment variables and an optional TOML file (a variable "
                       "wins over the file); see docs/sensor-config.md.",
                       epilog="settings (environment variable; config file key: the lower-case name without "
                       "PYHUNT_):\n" + "\n".join(rows), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--config", metavar="FILE", help="TOML config file (instead of PYHUNT_CONFIG)")
    s.add_argument("--check-config", action="store_true",
                   help="print the effective configuration and exit (status 2 if it is invalid)")


def add_zeek_command(sub) -> None:
    """`pyhunt zeek-ship`: the Zeek log shipper of the sensor, run alone (pyhunt.zeek.command)."""
    z = sub.add_parser("zeek-ship", help="ship Zeek's logs to Elasticsearch",
                       description="Tail the *.log files of a Zeek log directory (JSON or TSV, rotation followed), "
                       "map each line to ECS and send it to Elasticsearch with the create op and a content-derived "
                       "_id; offsets are checkpointed in STATE_DIR. Runs until SIGTERM/SIGINT, or with --once "
                       "until the directory is shipped. See docs/sensor-config.md, 'Zeek logs'.")
    z.add_argument("--dir", required=True, metavar="DIR", help="Zeek's log directory (PYHUNT_ZEEK_LOG_DIR)")
    z.add_argument("--state-dir", required=True, metavar="DIR",
                   help="checkpoints, and the spool and dead-letter file unless --es-spool/--es-dead-letter are "
                   "given (PYHUNT_STATE_DIR)")
    z.add_argument("--once", action="store_true", help="ship what is there, then exit")
    z.add_argument("--interval", type=_seconds, default=1.0, metavar="S",
                   help="seconds between polls of the directory (default 1)")
    z.add_argument("--observer", metavar="NAME", help="observer.hostname in the documents (default: this host)")
    from pyhunt.escli import add_es_arguments
    add_es_arguments(z, required=True)


def _open_output(path: str | None) -> tuple[BinaryIO, bool]:
    if path is None or path == "-":
        return sys.stdout.buffer, False
    try:
        return open(path, "wb"), True
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _tsv_time(ns: int) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(ns // 1_000_000_000))


def replay(args: argparse.Namespace) -> int:
    from pyhunt import _ext
    from pyhunt.flows import FlowMeter

    if args.sample:
        args.captures = [*args.captures, _sample_path()]
    if not args.captures:
        raise UsageError("no capture given (name one or more files, '-' for stdin, or --sample)")
    if args.captures.count("-") > 1:
        raise UsageError("stdin ('-') can be read only once")
    for c in args.captures:
        if c != "-" and not os.path.exists(c):
            raise UsageError(f"no such capture file: {c}")
    if args.zeek_bare is not None:
        if args.tcp_server_ports is not None or args.udp_server_ports is not None:
            raise UsageError("--zeek-bare sets the server ports: give it or --tcp/udp-server-ports, not both")
        args.tcp_server_ports, args.udp_server_ports = args.zeek_bare
    sink = _open_sink(args) if args.es else None
    table_mode = args.output is None and sys.stdout.isatty() and sink is None
    out, close_out = (None, False) if table_mode or (sink and args.output is None) else _open_output(args.output)
    meter = FlowMeter(ignore_checksums=args.ignore_checksums, cid_seed=args.cid_seed,
                      tcp_inactivity=args.tcp_inactivity, udp_inactivity=args.udp_inactivity,
                      icmp_inactivity=args.icmp_inactivity, other_inactivity=args.other_inactivity,
                      active_timeout=args.active_timeout, emit_updates=args.updates, capacity=args.capacity,
                      first_n=args.first_n, tcp_server_ports=args.tcp_server_ports,
                      udp_server_ports=args.udp_server_ports, local_nets=args.local_nets,
                      vlan_in_key=not args.no_vlan_key, tunnels=args.tunnels)
    observer = args.observer
    if observer is None and (sink is not None or args.format == "ecs"):   # only ECS documents name it
        import socket
        observer = socket.gethostname()
    # the summary, the table and Elasticsearch look at the records (numpy); -q -o FILE only formats them
    need_stats = table_mode or not args.quiet
    tsv = out is not None and args.format == "zeek-tsv"
    if need_stats:
        from pyhunt.summary import ProgressBar, Stats, format_flow_table, format_summary
    bar = ProgressBar() if (need_stats and not args.quiet and not args.no_progress and sys.stderr.isatty()) else None
    stats = Stats() if need_stats else None
    first_ts = last_ts = None
    header_done = False
    t0 = time.perf_counter()
    old_term = signal.signal(signal.SIGTERM, _sigterm) if sink is not None else None
    try:
        for batch in meter.read(*args.captures, progress=bar):
            recs = batch.to_numpy() if (stats is not None or sink is not None or tsv) else None
            if stats is not None:
                stats.add(recs)
            if tsv and len(recs):
                first_ts = int(recs["ts_start"][0]) if first_ts is None else first_ts
                last_ts = max(last_ts or 0, int(recs["ts_end"].max()))
            ecs = None
            if sink is not None:
                ecs = batch.to_ndjson("ecs", observer=observer)
                sink.write(recs, ecs)
            if out is not None:
                if tsv and first_ts is not None and not header_done:
                    out.write(_ext.tsv_header(_tsv_time(first_ts)))
                    header_done = True
                out.write(ecs if ecs is not None and args.format == "ecs"
                          else batch.to_ndjson(args.format, observer=observer))
        if out is not None and args.format == "zeek-tsv":
            if not header_done:
                out.write(_ext.tsv_header(_tsv_time(0)))
            out.write(_ext.tsv_footer(_tsv_time(last_ts or 0)))
        if out is not None:
            out.flush()
    finally:
        if bar is not None:
            bar.close()
        if close_out and out is not None:
            out.close()
        if sink is not None:
            sink_stats = sink.close()  # flush, also on SIGINT/SIGTERM
            signal.signal(signal.SIGTERM, old_term)
    elapsed = time.perf_counter() - t0
    if table_mode:
        sys.stdout.write(format_flow_table(stats.largest, stats.flows))
    if not args.quiet:
        sys.stderr.write(format_summary(meter.counters, stats, elapsed, _ext.N_DISPOSITIONS,
                                        _ext.COUNTER_NAMES, meter.errors))
    for err in meter.errors:
        sys.stderr.write(f"pyhunt: error: {err}; flows read before it were written\n")
    sink_failed = False
    if sink is not None:
        from pyhunt.escli import format_sink_summary
        if not args.quiet:
            sys.stderr.write(format_sink_summary(sink_stats, sink.settings, sink.failure))
        sink_failed = bool(sink_stats.dead_lettered or sink_stats.pending or sink_stats.dropped)
        if sink.failure and sink_failed:
            sys.stderr.write(f"pyhunt: error: {sink.failure}; {sink_stats.pending:,} flows wait in the spool "
                             f"{sink.settings.spool}\n")
        elif sink.failure:
            sys.stderr.write(f"pyhunt: warning: {sink.failure}; every flow was sent after it\n")
        if sink_stats.dead_lettered:
            sys.stderr.write(f"pyhunt: error: Elasticsearch rejected {sink_stats.dead_lettered:,} flows; they "
                             f"and the reasons are in {sink.settings.dead_letter}\n")
    return EXIT_RUNTIME if meter.errors or sink_failed else EXIT_OK


def sensor(args: argparse.Namespace) -> int:
    from pyhunt.sensor.config import ConfigError, describe, load_config
    try:
        cfg = load_config(config_file=args.config)
    except ConfigError as exc:
        for line in exc.problems:
            sys.stderr.write(f"pyhunt: config error: {line}\n")
        return EXIT_USAGE
    if args.check_config:
        sys.stdout.write(describe(cfg))
        return EXIT_OK
    from pyhunt.sensor.main import run
    return run(cfg)


def _sigterm(signum, frame):  # flush the Elasticsearch writer as on Ctrl-C
    raise KeyboardInterrupt


def _open_sink(args: argparse.Namespace):
    """The Elasticsearch bulk writer for --es, connected (or spooling if the cluster is not there)."""
    try:
        from pyhunt.sinks.elasticsearch import BulkWriter, ESConfigError
        from pyhunt.escli import settings_from_args
    except ImportError as exc:
        raise UsageError(f"--es needs the Elasticsearch client ({exc.name} is missing): "
                         "pip install 'pyhunt[es]'") from None
    try:
        settings = settings_from_args(args)
    except ESConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        return BulkWriter(settings).open()
    except OSError as exc:
        raise UsageError(f"cannot use the spool {settings.spool}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "replay":
            return replay(args)
        if args.command == "es":
            from pyhunt.escli import run_es
            return run_es(args)
        if args.command == "sensor":
            return sensor(args)
        if args.command == "kibana":
            return kibana(args)
        if args.command == "zeek-ship":
            from pyhunt.zeek.command import run_zeek_ship
            return run_zeek_ship(args)
        if args.command in ("hunt", "report"):
            from pyhunt.hunts.cli import run_hunt_command
            return run_hunt_command(args)
    except UsageError as exc:
        sys.stderr.write(f"pyhunt: error: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write("pyhunt: interrupted\n")
        return 130
    except MemoryError as exc:
        sys.stderr.write(f"pyhunt: error: out of memory ({exc}); lower --capacity\n")
        return EXIT_RUNTIME
    parser.print_help(sys.stderr)
    return EXIT_USAGE
