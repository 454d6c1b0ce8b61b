"""The Elasticsearch side of the command line: the shared ``--es*`` options and ``pyhunt es setup|check|drain``.

Each setting has one name: ``--es-<name>`` on the command line, ``PYHUNT_ES_<NAME>`` in the environment
(``--es`` / ``PYHUNT_ES_URL`` for the URL); the option wins over the environment.
"""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_es_arguments", "add_es_command", "settings_from_args", "run_es", "format_sink_summary"]

_ENV = "PYHUNT_ES_"


def _env(name: str) -> str | None:
    return os.environ.get(_ENV + name.upper())


def _yes_no(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not yes or no: {text!r}")


def _size(text: str) -> int:
    t = text.strip().upper()
    mult = 1
    for suffix, m in (("KIB", 1024), ("MIB", 1024 ** 2), ("GIB", 1024 ** 3), ("KB", 1000), ("MB", 1000 ** 2),
                      ("GB", 1000 ** 3), ("K", 1024), ("M", 1024 ** 2), ("G", 1024 ** 3)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        v = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size (e.g. 8M, 500KB, 1G): {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return v


# (name, metavar, type, help); the default comes from PYHUNT_ES_<NAME>, else ESSettings
_OPTIONS: tuple[tuple[str, str, object, str], ...] = (
    ("username", "USER", str, "basic-auth user"),
    ("password", "PASS", str, "basic-auth password (prefer the environment variable PYHUNT_ES_PASSWORD)"),
    ("api-key", "KEY", str, "API key (base64 'id:key' as Kibana shows it)"),
    ("ca-certs", "FILE", str, "PEM file of the CA(s) that signed the cluster's certificate (https)"),
    ("verify-certs", "yes|no", _yes_no, "verify the cluster's TLS certificate (default yes)"),
    ("namespace", "NAME", str, "index namespace: flows go to pyhunt-flow-NAME-YYYY.MM.DD behind the alias "
                               "pyhunt-flow-NAME (default 'default')"),
    ("batch-bytes", "SIZE", _size, "bytes per bulk request, e.g. 8M (default 8M)"),
    ("concurrency", "N", _count, "bulk requests in flight (default 2)"),
    ("max-retries", "N", _count, "retries of a request or document answered 429/502/503/504 (default 10)"),
    ("timeout", "S", float, "seconds to wait for a response (default 60)"),
    ("spool", "DIR", str, "spool directory for when the cluster is unreachable "
                          "(default ~/.local/state/pyhunt/es-spool)"),
    ("spool-max-bytes", "SIZE", _size, "spool bound; documents beyond it are dropped and counted (default 1G)"),
    ("dead-letter", "FILE", str, "rejected documents with the reason, one JSON per line "
                                 "(default ~/.local/state/pyhunt/es-dead-letter.ndjson)"),
)


def add_es_arguments(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The connection and writer options (replay and the es commands share them)."""
    g = p.add_argument_group("Elasticsearch (each option also from the environment, e.g. --es-batch-bytes as "
                             "PYHUNT_ES_BATCH_BYTES)")
    g.add_argument("--es", metavar="URL", default=_env("url"),
                   help="send flows to this Elasticsearch (http[s]://host:port; env PYHUNT_ES_URL)"
                   + ("" if required else "; see docs/elasticsearch.md"))
    for name, metavar, typ, help in _OPTIONS:
        g.add_argument(f"--es-{name}", metavar=metavar, type=typ, default=None, help=help)


def settings_from_args(args: argparse.Namespace):
    """ESSettings from the options, then the environment, then the defaults (ESConfigError if invalid)."""
    from pyhunt.sinks.elasticsearch import ESConfigError, ESSettings
    kw: dict = {"url": args.es}
    for name, _, typ, _ in _OPTIONS:
        attr = name.replace("-", "_")
        value = getattr(args, f"es_{attr}", None)
        if value is None and _env(attr) is not None:
            try:
                value = typ(_env(attr))  # type: ignore[operator]
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ESConfigError(f"{_ENV}{attr.upper()}: {exc}") from None
        if value is not None:
            kw[attr] = value
    return ESSettings(**kw)


def format_sink_summary(stats, settings, failure: str | None) -> str:
    out = [f"elasticsearch  {stats.sent:,} documents sent to {settings.url}"
           + (f" ({stats.drained:,} from the spool)" if stats.drained else ""),
           f"  retried {stats.retried:,}, dead-lettered {stats.dead_lettered:,}, spooled {stats.spooled:,}, "
           f"dropped {stats.dropped:,}, left in the spool {stats.pending:,}"]
    if stats.dead_lettered:
        out.append(f"  rejected documents and reasons: {settings.dead_letter}")
    if stats.pending:
        out.append(f"  spool: {settings.spool} (sent by the next run with --es, or `pyhunt es drain`)")
    return "\n".join(out) + "\n"


def add_es_command(sub) -> None:
    e = sub.add_parser("es", help="set up and check Elasticsearch for pyhunt",
                       description="Install pyhunt's index and component templates (setup), report the cluster "
                                   "and whether its templates and mappings match this version (check), or send "
                                   "what is left in the spool (drain).")
    esub = e.add_subparsers(dest="es_command", metavar="ACTION", parser_class=type(e))
    s = esub.add_parser("setup", help="install the index and component templates (and thus the aliases)")
    s.add_argument("--shards", type=_count, default=1, help="primary shards per daily index (default 1)")
    s.add_argument("--replicas", type=_count, default=None, help="replicas per index (default: the cluster's)")
    s.add_argument("--refresh-interval", default="5s", metavar="T", help="index.refresh_interval (default 5s)")
    c = esub.add_parser("check", help="cluster version and health, template state, mapping match")
    d = esub.add_parser("drain", help="send the spooled documents now")
    for p in (s, c, d):
        add_es_arguments(p, required=True)


def run_es(args: argparse.Namespace) -> int:
    """`pyhunt es ACTION`: exit 0 when all is well, 1 when the cluster is not as this version needs."""
    from pyhunt.cli import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, UsageError
    if args.es_command is None:
        raise UsageError("es needs an action: setup, check or drain")
    if not args.es:
        raise UsageError("no Elasticsearch URL: give --es URL or set PYHUNT_ES_URL")
    from elasticsearch import ApiError, TransportError
    from pyhunt.sinks import elasticsearch as sink
    try:
        settings = settings_from_args(args)
    except sink.ESConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        client = sink.make_client(settings)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"pyhunt: error: cannot use {settings.url}: {exc}\n")
        return EXIT_USAGE
    try:
        if args.es_command == "setup":
            names = sink.install_templates(client, settings.namespace, shards=args.shards, replicas=args.replicas,
                                           refresh_interval=args.refresh_interval)
            print(f"installed {len(names)} templates on {settings.url}: {', '.join(names)}")
            return EXIT_OK
        if args.es_command == "check":
            return _check(client, settings)
        w = sink.BulkWriter(settings, client).open()
        stats = w.close()
        sys.stderr.write(format_sink_summary(stats, settings, w.failure))
        if w.failure:
            sys.stderr.write(f"pyhunt: error: {w.failure}\n")
        return EXIT_OK if not stats.pending and not stats.dead_lettered else EXIT_RUNTIME
    except (ApiError, TransportError) as exc:
        sys.stderr.write(f"pyhunt: error: Elasticsearch at {settings.url}: {sink.describe_error(exc)}\n")
        return EXIT_RUNTIME


def _check(client, settings) -> int:
    from elasticsearch import ApiError
    from pyhunt.sinks.templates import FLOW_PREFIX, alias_name, flatten, flow_properties, schema_hash, template_names
    ok = True
    nodes = client.nodes.info(node_id="_local", filter_path="nodes.*.version").body.get("nodes", {})
    version = next(iter(nodes.values()), {}).get("version", "?")
    health = client.cluster.health()
    print(f"cluster    {health['cluster_name']}, Elasticsearch {version}, health {health['status']}, "
          f"{health['number_of_nodes']} node(s)")
    if health["status"] == "red":
        ok = False
    want = flatten(flow_properties())
    names = template_names(settings.namespace)
    for name in names["component"] + names["index"]:
        try:
            if name in names["component"]:
                got = client.cluster.get_component_template(name=name).body["component_templates"][0]
                meta = got["component_template"].get("_meta", {})
            else:
                got = client.indices.get_index_template(name=name).body["index_templates"][0]
                meta = got["index_template"].get("_meta", {})
        except ApiError as exc:
            if exc.meta.status != 404:
                raise
            print(f"template   {name}: MISSING (run `pyhunt es setup`)")
            ok = False
            continue
        same = meta.get("schema_hash") == schema_hash()
        ok &= same
        print(f"template   {name}: installed by pyhunt {meta.get('pyhunt_version', '?')}, "
              + ("mappings current" if same else "OUTDATED mappings (run `pyhunt es setup`)"))
    alias = alias_name(settings.namespace, FLOW_PREFIX)
    try:
        maps = client.indices.get_mapping(index=f"{FLOW_PREFIX}-{settings.namespace}-*").body
    except ApiError:
        maps = {}
    bad = 0
    for index, m in sorted(maps.items()):
        have = flatten(m.get("mappings", {}).get("properties", {}))
        wrong = {p: (have.get(p), t) for p, t in want.items() if have.get(p) not in (None, t)}
        missing = [p for p in want if p not in have]
        if wrong or missing:
            bad += 1
            detail = ", ".join(f"{p} is {h} not {t}" for p, (h, t) in list(wrong.items())[:5])
            print(f"index      {index}: mapping differs from what pyhunt writes: "
                  + (detail or f"{len(missing)} fields unmapped, e.g. {missing[0]}"))
    print(f"indices    {len(maps)} under alias {alias}" + (f", {bad} with a differing mapping" if bad else
                                                              ", mappings match"))
    ok &= bad == 0
    print("ok" if ok else "NOT OK")
    return 0 if ok else 1
