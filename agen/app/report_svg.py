"""Inline SVG charts for `agen report`: stacked bars (horizontal and vertical) and step lines.

No JavaScript, no external CSS, no fonts to fetch: each function returns one `<svg>` string that a
browser renders offline. Axes get a handful of "nice" ticks; every bar has a `<title>` so hovering
shows its exact value.
"""

from __future__ import annotations

import math
from html import escape
from typing import Callable, Sequence

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D",
           "#FF9DA6", "#BAB0AC")
FONT = "font-family='system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif'"
Fmt = Callable[[float], str]


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def fmt_num(x: float) -> str:
    """Compact number for axes: 1.2k, 3.4M, 0.0012."""
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.3g}M"
    if a >= 1e3:
        return f"{x / 1e3:.3g}k"
    if a == 0 or a >= 1:
        return f"{x:.4g}"
    return f"{x:.2g}"


def fmt_usd(x: float) -> str:
    return f"${x:.3g}" if abs(x) < 1 else f"${x:,.2f}"


def nice_ticks(hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """0 and a few round steps up to at least `hi` (whole steps only for counts)."""
    if hi <= 0:
        return [0.0, 1.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * mag for m in steps if m * mag >= raw)
    if integer:
        step = max(1.0, step)
    count = math.ceil(hi / step - 1e-9)
    return [i * step for i in range(count + 1)]


def _text(x: float, y: float, s: str, *, anchor: str = "start", size: int = 12, fill: str = "#333",
          weight: str = "normal") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-size='{size}' fill='{fill}' "
            f"font-weight='{weight}' {FONT}>{escape(s)}</text>")


def legend(names: Sequence[str], x: float, y: float, width: float, colors: Sequence[str] | None = None) -> tuple[str, float]:
    """Colour swatches laid out left to right, wrapping at `width`; returns (svg, height used)."""
    parts, cx, cy = [], x, y
    for i, name in enumerate(names):
        w = 22 + 7 * len(name)
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        c = colors[i] if colors else color(i)
        parts.append(f"<rect x='{cx:.1f}' y='{cy - 10:.1f}' width='12' height='12' rx='2' fill='{c}'/>")
        parts.append(_text(cx + 16, cy, name, size=11))
        cx += w
    return "".join(parts), cy - y + 18


def hbars(rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], *, title: str = "", width: int = 720,
          fmt: Fmt = fmt_num, label_w: int = 170, bar_h: int = 22, total_label: bool = True,
          integer: bool = False) -> str:
    """Horizontal stacked bars: one row per label, segments (name, value) stacked left to right.

    Segment colours are assigned by segment name, the same name always the same colour."""
    names: list[str] = []
    for _, segs in rows:
        for n, _v in segs:
            if n not in names:
                names.append(n)
    cmap = {n: color(i) for i, n in enumerate(names)}
    hi = max((sum(v for _, v in segs) for _, segs in rows), default=0.0)
    ticks = nice_ticks(hi, integer=integer)
    top = 28 if title else 8
    plot_w = width - label_w - 70
    scale = plot_w / ticks[-1]
    body, y = [], top + 8
    for label, segs in rows:
        x = label_w
        body.append(_text(label_w - 8, y + bar_h * 0.7, label, anchor="end"))
        for n, v in segs:
            if v <= 0:
                continue
            w = v * scale
            body.append(f"<rect x='{x:.1f}' y='{y}' width='{max(w, 0.5):.1f}' height='{bar_h}' fill='{cmap[n]}'>"
                        f"<title>{escape(label)} — {escape(n)}: {escape(fmt(v))}</title></rect>")
            x += w
        if total_label:
            body.append(_text(x + 6, y + bar_h * 0.7, fmt(sum(v for _, v in segs)), size=11, fill="#555"))
        y += bar_h + 8
    axis_y = y
    grid = []
    for t in ticks:
        tx = label_w + t * scale
        grid.append(f"<line x1='{tx:.1f}' x2='{tx:.1f}' y1='{top}' y2='{axis_y}' stroke='#ddd'/>")
        grid.append(_text(tx, axis_y + 14, fmt(t), anchor="middle", size=10, fill="#666"))
    leg, lh = ("", 0.0) if len(names) <= 1 else legend(names, label_w, axis_y + 36, plot_w, [cmap[n] for n in names])
    height = axis_y + 26 + lh + 6
    head = _text(8, 18, title, size=14, weight="600") if title else ""
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='{width}' height='{height:.0f}' "
            f"viewBox='0 0 {width} {height:.0f}' role='img' aria-label='{escape(title)}'>{head}"
            + "".join(grid) + "".join(body) + leg + "</svg>")


def vbars(edges: Sequence[float], series: Sequence[tuple[str, Sequence[float]]], *, title: str = "",
          width: int = 720, height: int = 260, x_fmt: Fmt = fmt_num, y_fmt: Fmt = fmt_num, x_label: str = "",
          y_label: str = "", colors: Sequence[str] | None = None, lines: Sequence[tuple[str, Sequence[float]]] = (),
          markers: Sequence[tuple[str, float]] = (), log_x: bool = False, integer: bool = False) -> str:
    """Vertical stacked bars over bins [edges[i], edges[i+1]) — histograms and time series.

    `lines` are extra series drawn as polylines over the bin centres (their own right-hand axis);
    `markers` are labelled vertical rules (e.g. percentiles). `log_x` positions bins by log10."""
    nb = len(edges) - 1
    names = [s[0] for s in series] + [n for n, _ in lines]
    leg_w = 24 + sum(22 + 7 * len(n) for n in names) if len(names) > 1 else 0
    crowded = bool(title) and leg_w and 16 + 8.5 * len(title) + leg_w > width
    left, right, bottom = 58, 58 if lines else 16, 42
    top = (48 if crowded else 30) if title else 10
    pw, ph = width - left - right, height - top - bottom
    pos = (lambda v: math.log10(max(v, 1e-12))) if log_x else (lambda v: v)
    x0, x1 = pos(edges[0]), pos(edges[-1])
    sx = pw / ((x1 - x0) or 1)
    X = lambda v: left + (pos(v) - x0) * sx  # noqa: E731
    totals = [sum(s[1][i] for s in series) for i in range(nb)]
    ticks = nice_ticks(max(totals, default=0), integer=integer)
    sy = ph / ticks[-1]
    out = [_text(8, 18, title, size=14, weight="600")] if title else []
    for t in ticks:
        ty = top + ph - t * sy
        out.append(f"<line x1='{left}' x2='{left + pw}' y1='{ty:.1f}' y2='{ty:.1f}' stroke='#e5e5e5'/>")
        out.append(_text(left - 6, ty + 4, y_fmt(t), anchor="end", size=10, fill="#666"))
    cols = colors or [color(i) for i in range(len(series))]
    for i in range(nb):
        xa, xb = X(edges[i]), X(edges[i + 1])
        w = max(xb - xa - (1 if xb - xa > 4 else 0), 0.8)
        base = 0.0
        for (name, vals), c in zip(series, cols):
            v = vals[i]
            if v <= 0:
                continue
            h = v * sy
            y = top + ph - (base + v) * sy
            out.append(f"<rect x='{xa:.1f}' y='{y:.1f}' width='{w:.1f}' height='{max(h, 0.5):.1f}' fill='{c}'>"
                       f"<title>{escape(name)} [{escape(x_fmt(edges[i]))}, {escape(x_fmt(edges[i + 1]))}): "
                       f"{escape(y_fmt(v))}</title></rect>")
            base += v
    for li, (name, vals) in enumerate(lines):
        hi = max(vals, default=0) or 1
        rt = nice_ticks(hi)
        ry = ph / rt[-1]
        pts = " ".join(f"{(X(edges[i]) + X(edges[i + 1])) / 2:.1f},{top + ph - v * ry:.1f}" for i, v in enumerate(vals))
        c = "#222" if li == 0 else color(len(series) + li)
        out.append(f"<polyline points='{pts}' fill='none' stroke='{c}' stroke-width='2'/>")
        if li == 0:
            for t in rt:
                out.append(_text(left + pw + 6, top + ph - t * ry + 4, fmt_num(t), size=10, fill="#222"))
    for label, v in markers:
        mx = X(v)
        out.append(f"<line x1='{mx:.1f}' x2='{mx:.1f}' y1='{top}' y2='{top + ph}' stroke='#222' "
                   f"stroke-dasharray='4 3'/>")
        out.append(_text(mx + 3, top + 11, label, size=10, fill="#222"))
    out.append(f"<line x1='{left}' x2='{left + pw}' y1='{top + ph}' y2='{top + ph}' stroke='#999'/>")
    for t in _x_ticks(edges, log_x):
        tx = X(t)
        out.append(f"<line x1='{tx:.1f}' x2='{tx:.1f}' y1='{top + ph}' y2='{top + ph + 4}' stroke='#999'/>")
        out.append(_text(tx, top + ph + 16, x_fmt(t), anchor="middle", size=10, fill="#666"))
    if x_label:
        out.append(_text(left + pw / 2, height - 6, x_label, anchor="middle", size=11, fill="#444"))
    if y_label:
        out.append(f"<text transform='translate(12,{top + ph / 2:.0f}) rotate(-90)' text-anchor='middle' "
                   f"font-size='11' fill='#444' {FONT}>{escape(y_label)}</text>")
    leg_cols = list(cols) + ["#222" if i == 0 else color(len(series) + i) for i in range(len(lines))]
    if len(names) > 1:
        y_leg = 36 if crowded else (18 if title else 12)
        leg, _ = legend(names, width - right - min(pw, leg_w), y_leg, pw, leg_cols)
        out.append(leg)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}'>{''.join(out)}</svg>")


def _x_ticks(edges: Sequence[float], log_x: bool) -> list[float]:
    lo, hi = edges[0], edges[-1]
    if log_x:
        out = []
        for e in range(math.floor(math.log10(max(lo, 1e-12))), math.ceil(math.log10(max(hi, 1e-12))) + 1):
            for m in (1, 2, 5):
                v = m * 10 ** e
                if lo <= v <= hi:
                    out.append(v)
        return out or [lo, hi]
    span = hi - lo
    return [lo + t for t in nice_ticks(span, 6) if lo + t <= hi + 1e-9 * max(span, 1)]
