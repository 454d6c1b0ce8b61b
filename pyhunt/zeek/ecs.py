"""Zeek log records -> ECS documents, the way Elastic's Zeek integration names the fields.

One table, ``ROWS``, says which Zeek field of which log goes to which document field, with its
Elasticsearch type and the conversion on the way. The same rows generate the table in
docs/sensor-config.md ("Zeek logs in Elasticsearch") and the ``zeek-*`` index template
(pyhunt.sinks.templates.zeek_properties). A field that no row names goes to
``zeek.<namespace>.<field>`` (Zeek's own name, dots kept): ``_source`` only, not indexed.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from pyhunt.zeek.parse import epoch, iso

__all__ = ["Row", "ROWS", "LOGS", "ECS_VERSION", "to_document", "rows_for", "namespace_of", "render_table"]

ECS_VERSION = "8.11.0"


def _mac(v: Any) -> str:
    return str(v).replace(":", "-").upper()


def _ns(v: Any) -> int:
    return int(round(float(v) * 1_000_000_000))


def _date(v: Any) -> str | None:
    t = epoch(v)
    return None if t is None else iso(t)


_TLS = {"SSLv2": ("ssl", "2.0"), "SSLv3": ("ssl", "3.0"), "TLSv10": ("tls", "1.0"), "TLSv11": ("tls", "1.1"),
        "TLSv12": ("tls", "1.2"), "TLSv13": ("tls", "1.3"), "DTLSv10": ("dtls", "1.0"),
        "DTLSv12": ("dtls", "1.2"), "DTLSv13": ("dtls", "1.3")}


def _tls_version(v: Any) -> str | None:
    return _TLS.get(str(v), (None, None))[1]


def _tls_protocol(v: Any) -> str | None:
    return _TLS.get(str(v), (None, None))[0]


def _ips(v: Any) -> list[str] | None:
    out = []
    for x in v if isinstance(v, list) else [v]:
        try:
            out.append(str(ipaddress.ip_address(str(x))))
        except ValueError:
            continue
    return out or None


def _first(v: Any) -> Any:
    return (v[0] if v else None) if isinstance(v, list) else v


def _outcome(v: Any) -> str | None:
    return None if not isinstance(v, bool) else ("success" if v else "failure")


def _str(v: Any) -> Any:
    return [str(x) for x in v] if isinstance(v, list) else str(v)


def _lower(v: Any) -> Any:
    return [str(x).lower() for x in v] if isinstance(v, list) else str(v).lower()


def _int(v: Any) -> int:
    return int(v)


#: conversion name -> function (the name appears in the docs table's wording, never in documents)
CONVERT: dict[str, Callable[[Any], Any]] = {
    "": lambda v: v, "date": _date, "ns": _ns, "mac": _mac, "str": _str, "lower": _lower, "int": _int,
    "tls_version": _tls_version, "tls_protocol": _tls_protocol, "ips": _ips, "first": _first,
    "outcome": _outcome,
}


@dataclass(frozen=True)
class Row:
    """Zeek field ``zeek`` of the logs ``logs`` ('all' = every log) -> document field ``target``."""
    logs: tuple[str, ...]
    zeek: str
    target: str
    es_type: str
    convert: str = ""


def _rows(logs: str, *specs: tuple) -> list[Row]:
    names = tuple(s.strip() for s in logs.split(","))
    return [Row(names, *spec) for spec in specs]


_CONN = "conn, conn_long"

#: every mapping, in the order of the docs table; for a document field named by several rows of one
#: log, the first present value wins (e.g. notice's id.orig_h before src), except list fields, which
#: collect (x509 alternative names)
ROWS: tuple[Row, ...] = tuple([
    *_rows("all",
           ("ts", "@timestamp", "date", "date"),
           ("uid", "zeek.session_id", "keyword"),
           ("id.orig_h", "source.ip", "ip"),
           ("id.orig_p", "source.port", "long"),
           ("id.resp_h", "destination.ip", "ip"),
           ("id.resp_p", "destination.port", "long"),
           ("community_id", "network.community_id", "keyword")),
    *_rows(_CONN,
           ("proto", "network.transport", "keyword", "lower"),
           ("service", "network.protocol", "keyword"),
           ("duration", "event.duration", "long", "ns"),
           ("orig_bytes", "zeek.connection.orig_bytes", "long"),
           ("resp_bytes", "zeek.connection.resp_bytes", "long"),
           ("orig_pkts", "source.packets", "long"),
           ("orig_ip_bytes", "source.bytes", "long"),
           ("resp_pkts", "destination.packets", "long"),
           ("resp_ip_bytes", "destination.bytes", "long"),
           ("conn_state", "zeek.connection.state", "keyword"),
           ("history", "zeek.connection.history", "keyword"),
           ("missed_bytes", "zeek.connection.missed_bytes", "long"),
           ("local_orig", "zeek.connection.local_orig", "boolean"),
           ("local_resp", "zeek.connection.local_resp", "boolean"),
           ("ip_proto", "network.iana_number", "keyword", "str"),
           ("tunnel_parents", "zeek.connection.tunnel_parents", "keyword"),
           ("vlan", "network.vlan.id", "keyword", "str"),
           ("inner_vlan", "network.inner.vlan.id", "keyword", "str"),
           ("orig_l2_addr", "source.mac", "keyword", "mac"),
           ("resp_l2_addr", "destination.mac", "keyword", "mac")),
    *_rows("conn",
           ("pyhunt_beacon", "zeek.connection.pyhunt_beacon", "boolean")),
    *_rows("dns",
           ("proto", "network.transport", "keyword", "lower"),
           ("trans_id", "dns.id", "keyword", "str"),
           ("query", "dns.question.name", "keyword"),
           ("qclass_name", "dns.question.class", "keyword"),
           ("qtype_name", "dns.question.type", "keyword"),
           ("rcode_name", "dns.response_code", "keyword"),
           ("answers", "zeek.dns.answers", "keyword"),
           ("answers", "dns.resolved_ip", "ip", "ips"),
           ("rejected", "zeek.dns.rejected", "boolean"),
           ("pyhunt_query_length", "zeek.dns.pyhunt_query_length", "long"),
           ("pyhunt_subdomain_entropy", "zeek.dns.pyhunt_subdomain_entropy", "double"),
           ("pyhunt_dns_tunnel", "zeek.dns.pyhunt_dns_tunnel", "boolean")),
    *_rows("http",
           ("trans_depth", "zeek.http.trans_depth", "long"),
           ("method", "http.request.method", "keyword"),
           ("host", "url.domain", "keyword"),
           ("uri", "url.original", "keyword"),
           ("referrer", "http.request.referrer", "keyword"),
           ("version", "http.version", "keyword"),
           ("user_agent", "user_agent.original", "keyword"),
           ("request_body_len", "http.request.body.bytes", "long"),
           ("response_body_len", "http.response.body.bytes", "long"),
           ("status_code", "http.response.status_code", "long"),
           ("status_msg", "zeek.http.status_msg", "keyword"),
           ("username", "url.username", "keyword"),
           ("tags", "zeek.http.tags", "keyword"),
           ("orig_mime_types", "zeek.http.orig_mime_types", "keyword"),
           ("resp_mime_types", "zeek.http.resp_mime_types", "keyword"),
           ("resp_fuids", "zeek.http.resp_fuids", "keyword")),
    *_rows("ssl",
           ("version", "tls.version", "keyword", "tls_version"),
           ("version", "tls.version_protocol", "keyword", "tls_protocol"),
           ("cipher", "tls.cipher", "keyword"),
           ("curve", "tls.curve", "keyword"),
           ("server_name", "tls.client.server_name", "keyword"),
           ("server_name", "destination.domain", "keyword"),
           ("resumed", "tls.resumed", "boolean"),
           ("established", "tls.established", "boolean"),
           ("next_protocol", "tls.next_protocol", "keyword"),
           ("ja3", "tls.client.ja3", "keyword"),
           ("ja3s", "tls.server.ja3s", "keyword"),
           ("subject", "tls.server.subject", "keyword"),
           ("issuer", "tls.server.issuer", "keyword"),
           ("client_subject", "tls.client.subject", "keyword"),
           ("client_issuer", "tls.client.issuer", "keyword"),
           ("cert_chain_fps", "tls.server.hash.sha256", "keyword", "first"),
           ("cert_chain_fps", "zeek.ssl.cert_chain_fps", "keyword"),
           ("client_cert_chain_fps", "tls.client.hash.sha256", "keyword", "first"),
           ("validation_status", "zeek.ssl.validation_status", "keyword"),
           ("last_alert", "zeek.ssl.last_alert", "keyword"),
           ("ssl_history", "zeek.ssl.ssl_history", "keyword")),
    *_rows("x509",
           ("fingerprint", "file.hash.sha256", "keyword"),
           ("id", "zeek.x509.id", "keyword"),
           ("certificate.version", "file.x509.version_number", "keyword", "str"),
           ("certificate.serial", "file.x509.serial_number", "keyword"),
           ("certificate.subject", "file.x509.subject.distinguished_name", "keyword"),
           ("certificate.issuer", "file.x509.issuer.distinguished_name", "keyword"),
           ("certificate.not_valid_before", "file.x509.not_before", "date", "date"),
           ("certificate.not_valid_after", "file.x509.not_after", "date", "date"),
           ("certificate.key_alg", "file.x509.public_key_algorithm", "keyword"),
           ("certificate.sig_alg", "file.x509.signature_algorithm", "keyword"),
           ("certificate.key_length", "file.x509.public_key_size", "long"),
           ("certificate.exponent", "file.x509.public_key_exponent", "long", "int"),
           ("certificate.curve", "file.x509.public_key_curve", "keyword"),
           ("san.dns", "file.x509.alternative_names", "keyword"),
           ("san.uri", "file.x509.alternative_names", "keyword"),
           ("san.email", "file.x509.alternative_names", "keyword"),
           ("san.ip", "file.x509.alternative_names", "keyword", "str"),
           ("basic_constraints.ca", "zeek.x509.basic_constraints.ca", "boolean"),
           ("host_cert", "zeek.x509.host_cert", "boolean"),
           ("client_cert", "zeek.x509.client_cert", "boolean")),
    *_rows("files",
           ("fuid", "zeek.files.fuid", "keyword"),
           ("source", "zeek.files.source", "keyword"),
           ("analyzers", "zeek.files.analyzers", "keyword"),
           ("mime_type", "file.mime_type", "keyword"),
           ("filename", "file.name", "keyword"),
           ("total_bytes", "file.size", "long"),
           ("seen_bytes", "zeek.files.seen_bytes", "long"),
           ("missing_bytes", "zeek.files.missing_bytes", "long"),
           ("is_orig", "zeek.files.is_orig", "boolean"),
           ("md5", "file.hash.md5", "keyword"),
           ("sha1", "file.hash.sha1", "keyword"),
           ("sha256", "file.hash.sha256", "keyword")),
    *_rows("notice",
           ("note", "zeek.notice.note", "keyword"),
           ("msg", "zeek.notice.msg", "keyword"),
           ("sub", "zeek.notice.sub", "keyword"),
           ("src", "source.ip", "ip"),
           ("dst", "destination.ip", "ip"),
           ("p", "destination.port", "long"),
           ("proto", "network.transport", "keyword", "lower"),
           ("file_mime_type", "file.mime_type", "keyword"),
           ("actions", "zeek.notice.actions", "keyword")),
    *_rows("weird",
           ("name", "zeek.weird.name", "keyword"),
           ("addl", "zeek.weird.addl", "keyword"),
           ("notice", "zeek.weird.notice", "boolean"),
           ("peer", "zeek.weird.peer", "keyword"),
           ("source", "zeek.weird.source", "keyword")),
    *_rows("dhcp",
           ("client_addr", "source.ip", "ip"),
           ("server_addr", "destination.ip", "ip"),
           ("mac", "source.mac", "keyword", "mac"),
           ("uids", "zeek.dhcp.uids", "keyword"),
           ("host_name", "zeek.dhcp.host_name", "keyword"),
           ("client_fqdn", "zeek.dhcp.client_fqdn", "keyword"),
           ("domain", "zeek.dhcp.domain", "keyword"),
           ("requested_addr", "zeek.dhcp.requested_addr", "ip"),
           ("assigned_addr", "zeek.dhcp.assigned_addr", "ip"),
           ("lease_time", "zeek.dhcp.lease_time", "double"),
           ("msg_types", "zeek.dhcp.msg_types", "keyword")),
    *_rows("ssh",
           ("version", "zeek.ssh.version", "long"),
           ("auth_success", "zeek.ssh.auth_success", "boolean"),
           ("auth_success", "event.outcome", "keyword", "outcome"),
           ("auth_attempts", "zeek.ssh.auth_attempts", "long"),
           ("direction", "network.direction", "keyword", "lower"),
           ("client", "zeek.ssh.client", "keyword"),
           ("server", "zeek.ssh.server", "keyword"),
           ("cipher_alg", "zeek.ssh.cipher_alg", "keyword"),
           ("mac_alg", "zeek.ssh.mac_alg", "keyword"),
           ("compression_alg", "zeek.ssh.compression_alg", "keyword"),
           ("kex_alg", "zeek.ssh.kex_alg", "keyword"),
           ("host_key_alg", "zeek.ssh.host_key_alg", "keyword"),
           ("host_key", "zeek.ssh.host_key", "keyword")),
    *_rows("smtp",
           ("trans_depth", "zeek.smtp.trans_depth", "long"),
           ("helo", "zeek.smtp.helo", "keyword"),
           ("mailfrom", "email.sender.address", "keyword"),
           ("rcptto", "email.to.address", "keyword"),
           ("from", "zeek.smtp.from", "keyword"),
           ("to", "zeek.smtp.to", "keyword"),
           ("cc", "zeek.smtp.cc", "keyword"),
           ("reply_to", "zeek.smtp.reply_to", "keyword"),
           ("msg_id", "email.message_id", "keyword"),
           ("subject", "email.subject", "keyword"),
           ("x_originating_ip", "zeek.smtp.x_originating_ip", "ip"),
           ("path", "zeek.smtp.path", "ip"),
           ("user_agent", "user_agent.original", "keyword"),
           ("last_reply", "zeek.smtp.last_reply", "keyword"),
           ("tls", "zeek.smtp.tls", "boolean"),
           ("is_webmail", "zeek.smtp.is_webmail", "boolean")),
    *_rows("pyhunt_beacon",
           ("orig_h", "source.ip", "ip"),
           ("resp_h", "destination.ip", "ip"),
           ("resp_p", "destination.port", "long"),
           ("proto", "network.transport", "keyword", "lower"),
           ("first_seen", "event.start", "date", "date"),
           ("connections", "zeek.pyhunt_beacon.connections", "long"),
           ("interval_mean", "zeek.pyhunt_beacon.interval_mean", "double"),
           ("interval_std", "zeek.pyhunt_beacon.interval_std", "double"),
           ("interval_cv", "zeek.pyhunt_beacon.interval_cv", "double")),
])

#: per log: (zeek.* namespace, event.category, event.type); other logs: (their name, none, none)
LOGS: dict[str, tuple[str, list[str] | None, list[str] | None]] = {
    "conn": ("connection", ["network"], ["connection"]),
    "conn_long": ("connection", ["network"], ["connection", "info"]),
    "dns": ("dns", ["network"], ["protocol"]),
    "http": ("http", ["network", "web"], ["protocol"]),
    "ssl": ("ssl", ["network"], ["protocol"]),
    "x509": ("x509", ["file"], ["info"]),
    "files": ("files", ["file"], ["info"]),
    "notice": ("notice", ["intrusion_detection"], ["info"]),
    "weird": ("weird", ["network"], ["info"]),
    "dhcp": ("dhcp", ["network"], ["protocol"]),
    "ssh": ("ssh", ["network"], ["protocol"]),
    "smtp": ("smtp", ["network", "email"], ["protocol"]),
    "pyhunt_beacon": ("pyhunt_beacon", ["network"], ["info"]),
}

_LIST_TARGETS = {"file.x509.alternative_names"}


def namespace_of(log: str) -> str:
    """The object under ``zeek.`` that holds the log's own fields (Elastic's names)."""
    return LOGS.get(log, (log, None, None))[0]


_BY_LOG: dict[str, tuple[tuple[Row, Callable], ...]] = {}


def rows_for(log: str) -> tuple[tuple[Row, Callable], ...]:
    """The rows that apply to a log (common ones first), with their conversion functions."""
    got = _BY_LOG.get(log)
    if got is None:
        got = _BY_LOG[log] = tuple((r, CONVERT[r.convert]) for r in ROWS if "all" in r.logs or log in r.logs)
    return got


def _put(doc: dict, path: str, value: Any) -> None:
    node = doc
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def to_document(log: str, rec: dict, observer: str) -> tuple[dict, float | None]:
    """(ECS document, epoch of ``ts`` or None) of one parsed Zeek record of log ``log``."""
    flat: dict[str, Any] = {}
    named, unfit = set(), set()
    for row, fn in rows_for(log):
        named.add(row.zeek)
        v = rec.get(row.zeek)
        if v is None or v == [] or v == "":
            continue
        try:
            v = fn(v)
        except (TypeError, ValueError, ArithmeticError):
            unfit.add(row.zeek)  # a value of another form than the mapping expects: kept under zeek.<log>
            continue
        if v is None:
            continue
        if row.target in flat:
            if row.target in _LIST_TARGETS:
                flat[row.target] = [*flat[row.target], *(v if isinstance(v, list) else [v])]
            continue
        flat[row.target] = v
    ns, category, etype = LOGS.get(log, (log, None, None))
    own = {k: v for k, v in rec.items() if k not in named or k in unfit}
    ts = epoch(rec.get("ts"))
    doc: dict[str, Any] = {}
    if "@timestamp" in flat:
        doc["@timestamp"] = flat.pop("@timestamp")
    doc["ecs"] = {"version": ECS_VERSION}
    event: dict[str, Any] = {"kind": "alert" if log == "notice" else "event", "dataset": f"zeek.{ns}"}
    if category:
        event["category"], event["type"] = category, etype
    doc["event"] = event
    doc["observer"] = {"hostname": observer, "type": "sensor", "product": "zeek", "vendor": "zeek"}
    for path, v in flat.items():
        _put(doc, path, v)
    _derive(doc, flat)
    if own:
        doc.setdefault("zeek", {}).setdefault(ns, {}).update(own)
    return doc, ts


def _derive(doc: dict, flat: dict) -> None:
    """network.type, network.bytes/packets and related.ip, as the flow documents have them."""
    ips = [ip for ip in (flat.get("source.ip"), flat.get("destination.ip")) if isinstance(ip, str)]
    if ips:
        doc.setdefault("related", {})["ip"] = list(dict.fromkeys(ips))
        doc.setdefault("network", {})["type"] = "ipv6" if ":" in ips[0] else "ipv4"
    for what in ("bytes", "packets"):
        a, b = flat.get(f"source.{what}"), flat.get(f"destination.{what}")
        if isinstance(a, int) and isinstance(b, int):
            doc.setdefault("network", {})[what] = a + b


def render_table() -> str:
    """The rows as docs/sensor-config.md's table (without the header and the rows of synthetic fields)."""
    return "".join(f"| {', '.join(r.logs)} | `{r.zeek}` | `{r.target}` | {r.es_type} |\n" for r in ROWS)
