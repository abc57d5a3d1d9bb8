"""Small inline SVG charts for the HTML report: grouped bars and lines, no JavaScript, no library.

Every chart is a ``<figure>`` holding one ``<svg>`` with a legend, axis labels and a ``<title>`` on
each bar or point (the browser shows it as a tooltip), so the page needs nothing to draw it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

COLORS = ("#3568a8", "#d9822b", "#3f9a56", "#b8434f", "#7f5aa6", "#8c6d46", "#c65ba0", "#6f7a80")
W, H = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 28, 44


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten).

    >>> nice_max(0.37), nice_max(7), nice_max(0)
    (0.5, 10.0, 1.0)
    """
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 5, 10):
        if value <= m * exp + 1e-12:
            return float(m * exp)
    return float(10 * exp)


def _frame(title: str, x_label: str, y_label: str, y_max: float, y_fmt: str, body: list[str],
           legend: Sequence[str]) -> str:
    ph = H - TOP - BOTTOM
    out = [f'<figure class="chart"><svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<text x="{LEFT}" y="16" class="ct">{escape(title)}</text>']
    for k in range(5):
        v = y_max * k / 4
        y = TOP + ph - ph * k / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{LEFT - 4}" y="{y + 4:.1f}" class="yl">{format(v, y_fmt)}</text>')
    out.append(f'<text x="12" y="{TOP + ph / 2:.0f}" class="al" transform="rotate(-90 12 {TOP + ph / 2:.0f})">'
               f'{escape(y_label)}</text>')
    out.append(f'<text x="{LEFT + (W - LEFT - RIGHT) / 2:.0f}" y="{H - 6}" class="al">{escape(x_label)}</text>')
    out.extend(body)
    out.append("</svg>")
    if len(legend) > 1:
        out.append('<figcaption>' + " ".join(
            f'<span class="key"><i style="background:{color(i)}"></i>{escape(name)}</span>'
            for i, name in enumerate(legend)) + "</figcaption>")
    out.append("</figure>")
    return "".join(out)


def bar_chart(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, title: str,
              x_label: str, y_label: str, y_fmt: str = ".2f", y_max: float | None = None,
              notes: Sequence[Sequence[str]] | None = None) -> str:
    """Grouped bars: one group per category, one bar per series (``None``: no bar). ``notes[s][c]``
    is added to that bar's tooltip (e.g. its ``n``).

    >>> svg = bar_chart(["1", "2"], [("a", [0.5, None])], title="t", x_label="x", y_label="y")
    >>> svg.count("<rect"), "a · 1: 0.50" in svg
    (1, True)
    """
    top = y_max if y_max is not None else nice_max(max((v for _, vs in series for v in vs if v is not None),
                                                       default=0.0))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    gw = pw / max(len(categories), 1)
    bw = gw * 0.8 / max(len(series), 1)
    body = []
    for c, cat in enumerate(categories):
        x0 = LEFT + c * gw + gw * 0.1
        body.append(f'<text x="{LEFT + (c + 0.5) * gw:.1f}" y="{TOP + ph + 14}" class="xl">{escape(cat)}</text>')
        for s, (name, values) in enumerate(series):
            v = values[c]
            if v is None:
                continue
            h = ph * min(v / top, 1.0) if top else 0.0
            note = f" ({notes[s][c]})" if notes and notes[s][c] else ""
            body.append(f'<rect x="{x0 + s * bw:.1f}" y="{TOP + ph - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                        f'height="{h:.1f}" fill="{color(s)}"><title>{escape(name)} · {escape(cat)}: '
                        f'{format(v, y_fmt)}{escape(note)}</title></rect>')
    return _frame(title, x_label, y_label, top, y_fmt, body, [name for name, _ in series])


def line_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, title: str, x_label: str,
               y_label: str, y_fmt: str = ".2f") -> str:
    """Lines through ``(x, y)`` points, one per series, on shared axes from 0.

    >>> "<polyline" in line_chart([("loss", [(1, 2.0), (2, 1.0)])], title="t", x_label="step", y_label="loss")
    True
    """
    pts = [p for _, ps in series for p in ps]
    x_max = nice_max(max((x for x, _ in pts), default=1.0))
    y_max = nice_max(max((y for _, y in pts), default=1.0))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    body = []
    for k in range(5):
        x = LEFT + pw * k / 4
        body.append(f'<text x="{x:.1f}" y="{TOP + ph + 14}" class="xl">{x_max * k / 4:g}</text>')
    for s, (name, ps) in enumerate(series):
        coords = [(LEFT + pw * x / x_max, TOP + ph - ph * y / y_max) for x, y in ps]
        body.append(f'<polyline fill="none" stroke="{color(s)}" stroke-width="1.6" points="'
                    + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
        if len(ps) <= 60:
            body.extend(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.2" fill="{color(s)}"><title>{escape(name)} · '
                        f'{x:g}: {format(y, y_fmt)}</title></circle>' for (cx, cy), (x, y) in zip(coords, ps, strict=True))
    return _frame(title, x_label, y_label, y_max, y_fmt, body, [name for name, _ in series])
