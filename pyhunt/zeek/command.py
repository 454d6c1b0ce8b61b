"""`python -m pyhunt zeek-ship`: the Zeek log shipper alone (the sensor runs the same ZeekShipper)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

__all__ = ["run_zeek_ship"]


def run_zeek_ship(args: argparse.Namespace) -> int:
    """Ship until SIGTERM/SIGINT (or, with --once, until the directory is shipped); 0 when every line
    read is in Elasticsearch (or a duplicate there), 1 when some wait in the spool or were rejected."""
    from pyhunt.cli import EXIT_OK, EXIT_RUNTIME, UsageError
    if not args.es:
        raise UsageError("no Elasticsearch URL: give --es URL or set PYHUNT_ES_URL")
    if not os.path.isdir(args.dir):
        raise UsageError(f"no such directory: {args.dir} (--dir, Zeek's log directory)")
    try:
        from pyhunt.escli import format_sink_summary, settings_from_args
        from pyhunt.sinks.elasticsearch import BulkWriter, ESConfigError
    except ImportError as exc:
        raise UsageError(f"zeek-ship needs the Elasticsearch client ({exc.name} is missing): "
                         "pip install 'pyhunt[es]'") from None
    from pyhunt.zeek.shipper import ZeekShipper
    if args.es_spool is None and not os.environ.get("PYHUNT_ES_SPOOL"):
        args.es_spool = os.path.join(args.state_dir, "es-spool")
    if args.es_dead_letter is None and not os.environ.get("PYHUNT_ES_DEAD_LETTER"):
        args.es_dead_letter = os.path.join(args.state_dir, "es-dead-letter.ndjson")
    try:
        settings = settings_from_args(args)
    except ESConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        os.makedirs(args.state_dir, exist_ok=True)
        writer = BulkWriter(settings).open()
    except OSError as exc:
        raise UsageError(f"cannot use the state directory {args.state_dir}: {exc.strerror or exc}") from None
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():  # a second signal: exit at once (the checkpoint is at the last commit)
            os._exit(EXIT_RUNTIME)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    shipper = None
    try:
        shipper = ZeekShipper(args.dir, args.state_dir, writer, observer=args.observer)
        if args.once:
            while not stop.is_set() and shipper.poll() > 0:  # until a poll finds nothing new
                pass
        else:
            shipper.run(stop, args.interval)
        zs = shipper.close()
    finally:
        sink = writer.close()
        for s, h in old.items():
            signal.signal(s, h)
    shipped = sum(zs.lines_shipped.values())
    errors = sum(zs.parse_errors.values())
    sys.stderr.write(f"zeek  {shipped:,} lines shipped from {args.dir} ({sink.duplicates:,} already in "
                     f"Elasticsearch), {errors:,} lines not Zeek records, {zs.files_deleted:,} rotated files "
                     "deleted\n")
    sys.stderr.write(format_sink_summary(sink, settings, writer.failure))
    if writer.failure and (sink.pending or sink.dead_lettered):
        sys.stderr.write(f"pyhunt: error: {writer.failure}; {sink.pending:,} documents wait in the spool "
                         f"{settings.spool}\n")
    return EXIT_RUNTIME if sink.pending or sink.dead_lettered or sink.dropped else EXIT_OK
