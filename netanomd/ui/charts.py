"""Charts drawn on the server as inline SVG (no script, nothing fetched): bars per hour, a
histogram with marker lines, observed-vs-baseline bars, a score-over-time scatter and a
timeline of spans.

Every function returns SVG markup (:class:`markupsafe.Markup`) sized by a viewBox, so it scales
with the page; each mark carries a ``<title>`` with its exact numbers (the browser's tooltip).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#3b6ea8", "#c8553d", "#588b58", "#b08a2e", "#7a5c99", "#4a9aa5", "#a05a7a")


def _utc(ts: float, fmt: str) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(fmt)


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top``."""
    if top <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(top))
    return float(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= top))


def _num(x: float) -> str:
    if x == int(x) and abs(x) < 1e9:
        return f"{int(x):,}"
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _svg(w: int, h: int, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>"
    )


def hourly_bars(
    hours: Sequence[tuple[float, int]], label: str, *, width: int = 760, height: int = 150
) -> Markup:
    """Counts per hour (start epoch seconds, count) as bars, hours labelled in UTC."""
    left, bottom, top = 40, 22, 8
    if not hours:
        return _svg(width, 40, ['<text x="8" y="24" class="muted">nothing yet</text>'], label)
    ymax = _nice(max(c for _, c in hours))
    plot_w, plot_h = width - left - 8, height - bottom - top
    step = min(plot_w / len(hours), 36.0)
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'class="axis"/>',
        f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{_num(ymax)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" class="tick" text-anchor="end">0</text>',
    ]
    every = max(1, math.ceil(len(hours) / 8))
    for i, (start, count) in enumerate(hours):
        x = left + i * step
        h = plot_h * count / ymax
        tip = f"{_utc(start, '%Y-%m-%d %H:00')} UTC: {count:,}"
        body.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{top + plot_h - h:.1f}" width="{step * 0.8:.1f}" '
            f'height="{h:.1f}" class="bar"><title>{escape(tip)}</title></rect>'
        )
        if i % every == 0:
            fmt = "%m-%d %H:00" if i == 0 or _utc(start, "%H") == "00" else "%H:00"
            body.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 6}" class="tick" '
                f'text-anchor="middle">{_utc(start, fmt)}</text>'
            )
    return _svg(width, height, body, label)


def histogram(
    edges: Sequence[float],
    counts: Sequence[int],
    markers: Sequence[tuple[str, float]],
    label: str,
    *,
    width: int = 760,
    height: int = 170,
) -> Markup:
    """Bars over ``edges`` with labelled vertical marker lines (e.g. training quantiles)."""
    left, bottom, top = 40, 22, 40
    lo, hi = edges[0], edges[-1]
    plot_w, plot_h = width - left - 8, height - bottom - top
    ymax = _nice(max(counts, default=0))

    def x_of(v: float) -> float:
        return left + plot_w * (min(max(v, lo), hi) - lo) / (hi - lo)

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'class="axis"/>',
        f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{_num(ymax)}</text>',
    ]
    for i, c in enumerate(counts):
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        h = plot_h * c / ymax
        tip = f"score {edges[i]:.3f}-{edges[i + 1]:.3f}: {c:,}"
        body.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(x1 - x0 - 1, 1):.1f}"'
            f' height="{h:.1f}" class="bar"><title>{escape(tip)}</title></rect>'
        )
    for v, anchor in ((lo, "start"), ((lo + hi) / 2, "middle"), (hi, "end")):
        body.append(
            f'<text x="{x_of(v):.1f}" y="{height - 6}" class="tick" '
            f'text-anchor="{anchor}">{v:.3f}</text>'
        )
    outside = [f"{name} {v:.3f}" for name, v in markers if not lo <= v <= hi]
    if outside:
        body.append(
            f'<text x="{width - 8}" y="{top + 14}" class="tick" text-anchor="end">'
            f"off the scale: {escape(', '.join(outside))}</text>"
        )
    shown = [(name, v) for name, v in markers if lo <= v <= hi]
    for k, (name, v) in enumerate(shown):
        x = x_of(v)
        body.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + plot_h}" class="marker '
            f'm{k % len(PALETTE)}" stroke="{PALETTE[(k + 1) % len(PALETTE)]}"/>'
            f'<text x="{x:.1f}" y="{top - 4 - 11 * (k % 3)}" class="tick" text-anchor="middle" '
            f'fill="{PALETTE[(k + 1) % len(PALETTE)]}">{escape(name)}'
            f"<title>{escape(name)}: {v:.4f}</title></text>"
        )
    return _svg(width, height, body, label)


def compare_bars(
    rows: Sequence[tuple[str, float, float, str]], label: str, *, width: int = 760
) -> Markup:
    """One pair of bars per row (name, observed, baseline, what the baseline is), each row
    scaled to its larger value: observed in red, the training baseline in blue."""
    if not rows:
        return _svg(width, 40, ['<text x="8" y="24" class="muted">no evidence</text>'], label)
    name_w, row_h = 300, 34
    plot_w = width - name_w - 150
    height = row_h * len(rows) + 24
    body = [
        f'<rect x="{name_w}" y="4" width="10" height="10" class="obs"/>'
        f'<text x="{name_w + 14}" y="13" class="tick">observed</text>'
        f'<rect x="{name_w + 90}" y="4" width="10" height="10" class="base"/>'
        f'<text x="{name_w + 104}" y="13" class="tick">training baseline</text>'
    ]
    for i, (name, obs, base, what) in enumerate(rows):
        y = 22 + i * row_h
        scale = max(abs(obs), abs(base), 1e-12)
        short = name if len(name) <= 46 else name[:45] + "…"
        wo, wb = plot_w * abs(obs) / scale, plot_w * abs(base) / scale
        body.append(
            f'<text x="{name_w - 6}" y="{y + 16}" class="label" text-anchor="end">'
            f"{escape(short)}<title>{escape(name)}</title></text>"
            f'<rect x="{name_w}" y="{y + 2}" width="{wo:.1f}" height="12" class="obs">'
            f"<title>observed {_num(obs)}</title></rect>"
            f'<text x="{name_w + wo + 4:.1f}" y="{y + 12}" class="tick">{_num(obs)}</text>'
            f'<rect x="{name_w}" y="{y + 16}" width="{wb:.1f}" height="12" class="base">'
            f"<title>{escape(what)} {_num(base)}</title></rect>"
            f'<text x="{name_w + wb + 4:.1f}" y="{y + 26}" class="tick">{_num(base)} '
            f"({escape(what)})</text>"
        )
    return _svg(width, height, body, label)


def scatter_time(
    points: Sequence[tuple[float, float]],
    label: str,
    *,
    threshold: float | None = None,
    width: int = 760,
    height: int = 150,
) -> Markup:
    """Points (flow time, score) over time, with the threshold as a line."""
    if not points:
        return _svg(width, 40, ['<text x="8" y="24" class="muted">no flows stored</text>'], label)
    left, bottom, top = 46, 22, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    values = [p[1] for p in points] + ([threshold] if threshold is not None else [])
    v0, v1 = min(values), max(values)
    v0, v1 = (v0 - 0.01, v1 + 0.01) if v1 - v0 < 0.02 else (v0, v1)
    t1 = t1 if t1 > t0 else t0 + 1

    def xy(t: float, v: float) -> tuple[float, float]:
        return left + plot_w * (t - t0) / (t1 - t0), top + plot_h * (1 - (v - v0) / (v1 - v0))

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'class="axis"/>',
        f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{v1:.3f}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" class="tick" text-anchor="end">{v0:.3f}</text>',
        f'<text x="{left}" y="{height - 6}" class="tick">{_utc(t0, "%Y-%m-%d %H:%M:%S")}</text>',
        f'<text x="{width - 8}" y="{height - 6}" class="tick" text-anchor="end">'
        f"{_utc(t1, '%H:%M:%S')} UTC</text>",
    ]
    if threshold is not None:
        _, y = xy(t0, threshold)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}" class="marker" '
            f'stroke="{PALETTE[1]}"/><text x="{width - 10}" y="{y - 3:.1f}" class="tick" '
            f'text-anchor="end" fill="{PALETTE[1]}">threshold {threshold:.3f}</text>'
        )
    for t, v in points[:2000]:
        x, y = xy(t, v)
        tip = f"{_utc(t, '%H:%M:%S')}: {v:.3f}"
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="dot"><title>{tip}</title></circle>'
        )
    return _svg(width, height, body, label)


def timeline(
    spans: Sequence[tuple[float, float, str, str]], label: str, *, width: int = 760
) -> Markup:
    """Spans (start, end, row name, tooltip) on one time axis, one row per name."""
    if not spans:
        return _svg(width, 40, ['<text x="8" y="24" class="muted">nothing yet</text>'], label)
    names = list(dict.fromkeys(s[2] for s in spans))
    name_w, row_h = 210, 22
    plot_w = width - name_w - 10
    height = row_h * len(names) + 26
    t0 = min(s[0] for s in spans)
    t1 = max(s[1] for s in spans)
    t1 = t1 if t1 > t0 else t0 + 1
    body = [
        f'<text x="{name_w}" y="{height - 6}" class="tick">{_utc(t0, "%Y-%m-%d %H:%M")}</text>',
        f'<text x="{width - 10}" y="{height - 6}" class="tick" text-anchor="end">'
        f"{_utc(t1, '%Y-%m-%d %H:%M')} UTC</text>",
    ]
    for i, name in enumerate(names):
        y = 4 + i * row_h
        body.append(
            f'<text x="{name_w - 6}" y="{y + 14}" class="label" text-anchor="end">'
            f"{escape(name)}</text>"
        )
    for start, end, name, tip in spans:
        i = names.index(name)
        x0 = name_w + plot_w * (start - t0) / (t1 - t0)
        w = max(plot_w * (end - start) / (t1 - t0), 3.0)
        body.append(
            f'<rect x="{x0:.1f}" y="{4 + i * row_h + 3}" width="{w:.1f}" height="14" rx="2" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(tip)}</title></rect>'
        )
    return _svg(width, height, body, label)
