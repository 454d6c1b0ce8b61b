"""The HTML report: one self-contained file (inline CSS and SVG, a few lines of inline JS, no external
assets), readable without a server."""
from __future__ import annotations

import html
from typing import Sequence

from pyhunt.hunts.common import Finding, HuntParams
from pyhunt.hunts.overview import Overview
from pyhunt.hunts.timeutil import iso

__all__ = ["write_report", "SECTIONS"]

#: the id of every section, in page order (hunt sections are hunt-<name>)
SECTIONS = ("summary", "overview", "top-talkers", "conn-states", "beacon-plots")

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c0d0}main{padding:8px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:17px;margin:4px 0 10px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.lvl{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}
.high{background:#fde2e1;color:#a4161a}.medium{background:#fff1cc;color:#8a5a00}.low{background:#e8eef7;color:#3a4a66}
.ids{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;color:#4a5568;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #dde1e8;border-radius:6px;padding:8px 14px;min-width:150px}
.card b{display:block;font-size:20px}.plots{display:flex;flex-wrap:wrap;gap:18px}.plot h3{font-size:13px;margin:6px 0}
svg text{font:11px system-ui,sans-serif;fill:#4a5568}.muted{color:#8a94a6}
button.toggle{font-size:12px;border:1px solid #c9ced8;background:#fff;border-radius:4px;cursor:pointer;padding:1px 8px}
tr.more{display:none}section.expanded tr.more{display:table-row}
"""

_JS = """
(function(){
  document.querySelectorAll('button.toggle').forEach(function(b){
    b.addEventListener('click',function(){
      var s=b.closest('section');s.classList.toggle('expanded');
      b.textContent=s.classList.contains('expanded')?'show fewer':'show all';});
  });
  document.body.setAttribute('data-ready','1');
})();
"""

_SHOWN = 10  # rows per hunt before 'show all'


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _t(ts) -> str:
    return (iso(ts) or "-")[:19].replace("T", " ")


def _num(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def bar_chart(items: Sequence[tuple[str, float]], width: int = 560, bar_h: int = 18, color: str = "#3b6fd8",
              label_w: int = 150) -> str:
    """Horizontal bars, one per (label, value)."""
    if not items:
        return '<p class="muted">no data</p>'
    top = max(v for _, v in items) or 1
    h = bar_h * len(items) + 6
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img">']
    for i, (label, v) in enumerate(items):
        y = 3 + i * bar_h
        w = max(1.0, (width - label_w - 70) * v / top)
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 6}" text-anchor="end">{_e(label)}</text>'
                   f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 5}" fill="{color}" rx="2">'
                   f'<title>{_e(label)}: {v:,.0f}</title></rect>'
                   f'<text x="{label_w + w + 5:.1f}" y="{y + bar_h - 6}">{_num(v)}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(values: Sequence[float], bins: int = 30, width: int = 420, height: int = 150,
              unit: str = "s") -> str:
    """A vertical-bar histogram of values, with the axis range as labels."""
    if not values:
        return '<p class="muted">no data</p>'
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / span * bins))] += 1
    top = max(counts)
    pw, ph = width - 40, height - 30
    bw = pw / bins
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           f'<line x1="30" y1="{ph + 5}" x2="{width - 5}" y2="{ph + 5}" stroke="#99a3b5"/>']
    for i, c in enumerate(counts):
        if c:
            bh = ph * c / top
            a = lo + span * i / bins
            out.append(f'<rect x="{30 + i * bw:.1f}" y="{ph + 5 - bh:.1f}" width="{max(1.0, bw - 1):.1f}" '
                       f'height="{bh:.1f}" fill="#d8573b"><title>{a:.1f}-{a + span / bins:.1f} {unit}: {c}</title></rect>')
    out.append(f'<text x="30" y="{height - 8}">{lo:.1f} {unit}</text>'
               f'<text x="{width - 5}" y="{height - 8}" text-anchor="end">{hi:.1f} {unit}</text>'
               f'<text x="26" y="14" text-anchor="end">{top}</text></svg>')
    return "".join(out)


def timeline(ts: Sequence[float], start: float, end: float, width: int = 560, height: int = 60) -> str:
    """A tick per connection over the observed window."""
    if not ts:
        return '<p class="muted">no data</p>'
    span = (end - start) or 1.0
    pw = width - 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           f'<line x1="10" y1="{height - 20}" x2="{width - 10}" y2="{height - 20}" stroke="#99a3b5"/>']
    for t in ts:
        x = 10 + pw * (t - start) / span
        out.append(f'<line x1="{x:.1f}" y1="8" x2="{x:.1f}" y2="{height - 22}" stroke="#3b6fd8" stroke-opacity=".6"/>')
    out.append(f'<text x="10" y="{height - 5}">{_e(_t(start))}</text>'
               f'<text x="{width - 10}" y="{height - 5}" text-anchor="end">{_e(_t(end))}</text></svg>')
    return "".join(out)


def _pivot(f: Finding) -> str:
    parts = []
    if f.flow_ids:
        parts.append("event.id: " + " or ".join(f.flow_ids))
    if f.community_ids:
        parts.append("network.community_id: " + " or ".join(f'"{c}"' for c in f.community_ids))
    return "<br>".join(_e(p) for p in parts) or '<span class="muted">none</span>'


def _hunt_section(name: str, description: str, findings: list[Finding]) -> str:
    levels = {lv: sum(f.level == lv for f in findings) for lv in ("high", "medium", "low")}
    head = (f'<section id="hunt-{_e(name)}"><h2>{_e(name)}</h2><p>{_e(description)}. '
            f'{len(findings)} findings: {levels["high"]} high, {levels["medium"]} medium, {levels["low"]} low.')
    if len(findings) > _SHOWN:
        head += ' <button class="toggle" type="button">show all</button>'
    head += "</p>"
    if not findings:
        return head + '<p class="muted">nothing found</p></section>'
    rows = ["<table><thead><tr><th>score</th><th>level</th><th>lead</th><th>what</th><th>count</th>"
            "<th>first seen</th><th>last seen</th><th>pivot (Kibana)</th></tr></thead><tbody>"]
    for i, f in enumerate(findings):
        cls = ' class="more"' if i >= _SHOWN else ""
        rows.append(f'<tr{cls}><td class="num">{f.score:.3f}</td><td><span class="lvl {f.level}">{f.level}</span></td>'
                    f"<td>{_e(f.key)}</td><td>{_e(f.summary)}</td><td class=\"num\">{f.count:,}</td>"
                    f"<td>{_e(_t(f.first_seen))}</td><td>{_e(_t(f.last_seen))}</td>"
                    f'<td class="ids">{_pivot(f)}</td></tr>')
    rows.append("</tbody></table></section>")
    return head + "".join(rows)


def _beacon_plots(findings: list[Finding], ov: Overview, n: int = 4) -> str:
    out = ['<section id="beacon-plots"><h2>Beacons: inter-arrival times and timelines</h2>']
    shown = [f for f in findings if f.details.get("_timestamps")][:n]
    if not shown:
        out.append('<p class="muted">no beacon candidates</p>')
    for f in shown:
        ts = sorted(f.details["_timestamps"])
        iat = [b - a for a, b in zip(ts, ts[1:])]
        start = ov.first if ov.first is not None else ts[0]
        end = max(ov.last if ov.last is not None else ts[-1], ts[-1])
        out.append(f'<div class="plots"><div class="plot"><h3>{_e(f.key)} (score {f.score:.3f}): intervals</h3>'
                   f"{histogram(iat)}</div><div class=\"plot\"><h3>connections over time</h3>"
                   f"{timeline(ts, min(start, ts[0]), end)}</div></div>")
    out.append("</section>")
    return "".join(out)


def write_report(results: dict[str, list[Finding]], ov: Overview, *, title: str = "pyhunt hunting report",
                 source: str = "", params: HuntParams | None = None) -> str:
    """The whole HTML page as a string."""
    from pyhunt import __version__
    from pyhunt.hunts import HUNTS
    n_high = sum(f.level == "high" for fs in results.values() for f in fs)
    cards = [("flows", f"{ov.flows:,}"), ("DNS queries", f"{ov.dns_queries:,}"),
             ("from", _t(ov.first)), ("to", _t(ov.last)), ("high findings", str(n_high))]
    summary_rows = "".join(
        f'<tr><td><a href="#hunt-{_e(n)}">{_e(n)}</a></td><td class="num">{len(fs)}</td>'
        f'<td class="num">{sum(f.level == "high" for f in fs)}</td>'
        f'<td>{_e(fs[0].key) if fs else "-"}</td><td class="num">{fs[0].score if fs else 0:.3f}</td></tr>'
        for n, fs in results.items())
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
             f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head><body>',
             f"<header><h1>{_e(title)}</h1><p>{_e(source)} &middot; pyhunt {_e(__version__)}</p></header><main>",
             '<section id="summary"><h2>Summary</h2><div class="cards">'
             + "".join(f"<div class=\"card\">{_e(k)}<b>{_e(v)}</b></div>" for k, v in cards) + "</div>"
             "<table><thead><tr><th>hunt</th><th>findings</th><th>high</th><th>top lead</th><th>top score</th></tr>"
             f"</thead><tbody>{summary_rows}</tbody></table></section>",
             '<section id="overview"><h2>Flows per hour</h2>'
             + bar_chart([(_t(h)[:13] + "h", c) for h, c in ov.per_hour[-48:]], color="#6b7a99") + "</section>",
             '<section id="top-talkers"><h2>Top talkers (IP bytes sent and received)</h2>'
             + bar_chart([(ip, b) for ip, b in ov.top_talkers]) + "</section>",
             '<section id="conn-states"><h2>Connection states (conn_state)</h2>'
             + bar_chart(ov.states, color="#2f9e72") + "</section>"]
    parts.append(_beacon_plots(results.get("beacons", []), ov))
    for name, fs in results.items():
        parts.append(_hunt_section(name, HUNTS[name].DESCRIPTION, fs))
    parts.append(f"</main><script>{_JS}</script></body></html>\n")
    return "".join(parts)
