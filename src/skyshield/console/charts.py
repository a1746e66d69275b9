"""Small server-rendered SVG charts (no JavaScript, no CDN): stacked bars over time and horizontal bars."""

from __future__ import annotations

from html import escape

COLOURS = {
    "personal": "#4e79a7", "notification": "#59a14f", "verification": "#76b7b2", "promotion": "#edc948",
    "fraud": "#e15759", "illicit": "#b07aa1",
    "deliver": "#59a14f", "tag": "#76b7b2", "fold": "#edc948", "hold": "#f28e2b", "block": "#e15759",
}


def stacked_bars(buckets: list[str], series: dict[str, list[int]], *, title: str, width: int = 760,
                 height: int = 220) -> str:
    """One bar per bucket, one colour per series (e.g. category), with a legend."""
    if not buckets:
        return f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="60">' \
               f'<text x="10" y="35">no traffic yet</text></svg>'
    left, bottom, top = 40, 30, 26
    plot_h = height - bottom - top
    totals = [sum(s[i] for s in series.values()) for i in range(len(buckets))]
    peak = max(totals) or 1
    bar_w = min((width - left - 10) / len(buckets), 48.0)
    parts = [f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">',
             f'<text x="{left}" y="14" class="axis">{peak} max per bucket</text>']
    for i, bucket in enumerate(buckets):
        y = top + plot_h
        for name, values in series.items():
            v = values[i]
            if not v:
                continue
            h = plot_h * v / peak
            y -= h
            parts.append(f'<rect x="{left + i * bar_w + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                         f'height="{h:.1f}" fill="{COLOURS.get(name, "#999")}"><title>{escape(bucket)} '
                         f'{escape(name)}: {v}</title></rect>')
        if i % max(1, len(buckets) // 8) == 0:
            label = escape(bucket[-5:])
            parts.append(f'<text x="{left + i * bar_w:.1f}" y="{height - 12}" class="axis">{label}</text>')
    x = left
    for name in series:
        parts.append(f'<rect x="{x}" y="{height - 9}" width="9" height="9" fill="{COLOURS.get(name, "#999")}"/>'
                     f'<text x="{x + 12}" y="{height - 1}" class="legend">{escape(name)}</text>')
        x += 14 + 8 * len(name) + 12
    parts.append("</svg>")
    return "".join(parts)


def hbars(items: list[tuple[str, int, str]], *, title: str, width: int = 520, colour: str = "#e15759") -> str:
    """Horizontal bars: (label, value, link or '')."""
    if not items:
        return f'<p class="empty">{escape(title)}: none yet</p>'
    row_h, label_w = 22, 200
    peak = max(v for _, v, _ in items) or 1
    height = row_h * len(items) + 4
    parts = [f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{height}">']
    for i, (label, value, link) in enumerate(items):
        y = i * row_h + 2
        w = (width - label_w - 50) * value / peak
        text = escape(label[:28])
        if link:
            text = f'<a href="{escape(link)}">{text}</a>'
        parts.append(f'<text x="0" y="{y + 15}" class="label">{text}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" fill="{colour}">'
                     f'<title>{escape(label)}: {value}</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="value">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)
