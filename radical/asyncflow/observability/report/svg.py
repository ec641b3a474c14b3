"""Inline SVG charts for ``report.html``: no script, no external file.

Every text that reaches the SVG goes through :func:`esc`.  Charts whose
items would be too many to draw one by one are binned by the callers (see
:mod:`.page`); what arrives here is at most a few thousand shapes.
"""

from __future__ import annotations

import html
import math
from typing import Dict, List, Optional, Sequence, Tuple

WIDTH = 960
COLORS = {'DONE': '#2e7d32', 'FAILED': '#c62828', 'CANCELED': '#9e9e9e',
          'UNFINISHED': '#1565c0'}
#: The part of a bar before RUNNING (submitted, queued in the backend).
QUEUED_OPACITY = 0.35


def esc(text: object) -> str:
    """Text safe in HTML and SVG content and in quoted attributes."""
    return html.escape(str(text), quote=True)


def fmt(value: float) -> str:
    """A coordinate, short."""
    return f'{value:.1f}'.rstrip('0').rstrip('.') if value == value else '0'


def seconds(value: Optional[float]) -> str:
    """A duration for people: 0.012 s, 3.4 s, 5 min 2 s, 2 h 3 min."""
    if value is None:
        return '-'
    if value < 10:
        return f'{value:.3g} s'
    if value < 120:
        return f'{value:.1f} s'
    if value < 7200:
        return f'{int(value // 60)} min {int(value % 60)} s'
    return f'{int(value // 3600)} h {int(value % 3600 // 60)} min'


def nice_ticks(high: float, count: int = 6) -> List[float]:
    """Round tick values from 0 to about ``high``."""
    if not high > 0:
        return [0.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(high / step + 1e-9) + 1)]


def tick_label(value: float) -> str:
    """An axis label: short, whatever the magnitude."""
    return f'{value:g}' if abs(value) < 1e5 else f'{value:.3g}'


class Frame:
    """A chart's plot area and its scales: x from 0 to ``x_max``, y from 0 to ``y_max``."""

    def __init__(self, x_max: float, y_max: float, height: int, left: int = 60,
                 right: int = 12, top: int = 10, bottom: int = 34) -> None:
        self.x_max = x_max if x_max > 0 else 1.0
        self.y_max = y_max if y_max > 0 else 1.0
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.height = height
        self.plot_w = WIDTH - left - right
        self.plot_h = height - top - bottom

    def x(self, value: float) -> float:
        """The abscissa of ``value``, clipped to the plot."""
        return self.left + self.plot_w * min(max(value, 0.0), self.x_max) / self.x_max

    def y(self, value: float) -> float:
        """The ordinate of ``value``, clipped to the plot."""
        return self.top + self.plot_h * (1 - min(max(value, 0.0), self.y_max) / self.y_max)

    def axes(self, x_label: str, y_label: str, y_ticks: bool = True) -> List[str]:
        """The frame, the x ticks and (``y_ticks``) the y ticks, as SVG elements."""
        out = [f'<rect class="frame" x="{self.left}" y="{self.top}" '
               f'width="{self.plot_w}" height="{self.plot_h}"/>']
        bottom = self.top + self.plot_h
        for tick in nice_ticks(self.x_max):
            x = fmt(self.x(tick))
            out.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{self.top}" y2="{bottom}"/>'
                       f'<text class="tick" x="{x}" y="{bottom + 14}" '
                       f'text-anchor="middle">{tick_label(tick)}</text>')
        if y_ticks:
            for tick in nice_ticks(self.y_max, 4):
                y = fmt(self.y(tick))
                out.append(f'<text class="tick" x="{self.left - 6}" y="{y}" '
                           f'text-anchor="end" dominant-baseline="middle">'
                           f'{tick_label(tick)}</text>')
        out.append(f'<text class="label" x="{self.left + self.plot_w / 2:.0f}" '
                   f'y="{self.height - 4}" text-anchor="middle">{esc(x_label)}</text>')
        if y_label:
            out.append(f'<text class="label" transform="translate(12,{self.top + self.plot_h / 2:.0f})'
                       f' rotate(-90)" text-anchor="middle">{esc(y_label)}</text>')
        return out


def svg(height: int, body: Sequence[str], label: str, chart_id: str) -> str:
    """An SVG element of the page's width holding ``body``."""
    return (f'<svg id="{esc(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {height}" '
            f'width="{WIDTH}" height="{height}" role="img" aria-label="{esc(label)}">'
            + ''.join(body) + '</svg>')


def legend(items: Sequence[Tuple[str, str]]) -> str:
    """A row of colour keys (colour, text) as HTML."""
    return '<div class="legend">' + ''.join(
        f'<span><i style="background:{color}"></i>{esc(text)}</span>' for color, text in items
    ) + '</div>'


def steps(frame: Frame, points: Sequence[Tuple[float, float]], css: str) -> str:
    """A step line through ``(x, y)`` points (each value holds until the next x)."""
    if not points:
        return ''
    coords = []
    last_y = None
    for x, y in points:
        px, py = fmt(frame.x(x)), fmt(frame.y(y))
        if last_y is not None:
            coords.append(f'{px},{last_y}')
        coords.append(f'{px},{py}')
        last_y = py
    coords.append(f'{fmt(frame.x(frame.x_max))},{last_y}')
    return f'<polyline class="{css}" points="{" ".join(coords)}"/>'


def stacked_areas(frame: Frame, width: float, layers: Sequence[Tuple[str, Sequence[float]]],
                  base_y: float, scale: float) -> List[str]:
    """Stacked step areas of per-bin values, ``width`` seconds per bin, drawn upward
    from pixel row ``base_y``, ``scale`` pixels per unit."""
    out = []
    below: Optional[List[float]] = None
    for color, values in layers:
        if not any(values):
            continue
        low = below or [0.0] * len(values)
        high = [a + b for a, b in zip(low, values)]
        top_line, bottom_line = [], []
        for i, (lo, hi) in enumerate(zip(low, high)):
            x0, x1 = fmt(frame.x(i * width)), fmt(frame.x((i + 1) * width))
            y_hi, y_lo = fmt(base_y - hi * scale), fmt(base_y - lo * scale)
            top_line += [f'{x0},{y_hi}', f'{x1},{y_hi}']
            bottom_line += [f'{x1},{y_lo}', f'{x0},{y_lo}']
        points = ' '.join(top_line + bottom_line[::-1])
        out.append(f'<polygon fill="{color}" points="{points}"/>')
        below = high
    return out


def histogram(counts: Sequence[int], edges: Sequence[float], chart_id: str, label: str,
              x_label: str, overflow: int = 0) -> str:
    """Bars of ``counts`` between ``edges``; ``overflow`` values beyond the last edge."""
    height = 220
    frame = Frame(edges[-1] if edges else 1.0, max(list(counts) + [overflow, 1]), height)
    body = frame.axes(x_label, 'tasks')
    for i, count in enumerate(counts):
        if not count:
            continue
        x0, x1 = frame.x(edges[i]), frame.x(edges[i + 1])
        y = frame.y(count)
        body.append(f'<rect class="bar" x="{fmt(x0)}" y="{fmt(y)}" width="{fmt(max(x1 - x0 - 1, 1))}"'
                    f' height="{fmt(frame.top + frame.plot_h - y)}"><title>'
                    f'{count} tasks waited {seconds(edges[i])} to {seconds(edges[i + 1])}'
                    f'</title></rect>')
    if overflow:
        body.append(f'<text class="tick" x="{frame.left + frame.plot_w}" y="{frame.top + 12}" '
                    f'text-anchor="end">+{overflow} beyond {seconds(edges[-1])}</text>')
    return svg(height, body, label, chart_id)


def bar_chart(items: Sequence[Tuple[str, float]], chart_id: str, label: str, y_label: str,
              title_unit: str = 'tasks') -> str:
    """Vertical bars, one per (label, value), labels under them."""
    height = 240
    frame = Frame(max(len(items), 1), max([v for _, v in items] + [1]), height, bottom=70)
    body = frame.axes('', y_label)[:1]          # the frame only: x is categorical
    for tick in nice_ticks(frame.y_max, 4):
        y = fmt(frame.y(tick))
        body.append(f'<text class="tick" x="{frame.left - 6}" y="{y}" text-anchor="end" '
                    f'dominant-baseline="middle">{tick_label(tick)}</text>')
    slot = frame.plot_w / max(len(items), 1)
    for i, (name, value) in enumerate(items):
        x = frame.left + i * slot
        y = frame.y(value)
        body.append(f'<rect class="bar" x="{fmt(x + slot * 0.1)}" y="{fmt(y)}" '
                    f'width="{fmt(max(slot * 0.8, 1))}" height="{fmt(frame.top + frame.plot_h - y)}">'
                    f'<title>{esc(name)}: {value:g} {esc(title_unit)}</title></rect>')
        if slot >= 12:
            cx, cy = fmt(x + slot / 2), frame.top + frame.plot_h + 8
            body.append(f'<text class="tick" transform="translate({cx},{cy}) rotate(40)">'
                        f'{esc(name[:24])}</text>')
    body.append(f'<text class="label" transform="translate(12,{frame.top + frame.plot_h / 2:.0f})'
                f' rotate(-90)" text-anchor="middle">{esc(y_label)}</text>')
    return svg(height, body, label, chart_id)


def lane_labels(frame: Frame, lanes: Sequence[Tuple[str, float, float]]) -> List[str]:
    """Lane names at the left and separators: (name, top pixel, bottom pixel)."""
    out = []
    for i, (name, top, bottom) in enumerate(lanes):
        if i:
            out.append(f'<line class="sep" x1="{frame.left}" x2="{frame.left + frame.plot_w}" '
                       f'y1="{fmt(top)}" y2="{fmt(top)}"/>')
        short = name if len(name) <= 18 else name[:17] + '\u2026'
        out.append(f'<text class="lane" x="{frame.left - 6}" y="{fmt((top + bottom) / 2)}" '
                   f'text-anchor="end" dominant-baseline="middle">{esc(short)}'
                   f'<title>{esc(name)}</title></text>')
    return out


def colors_for(states: Dict[str, int]) -> List[Tuple[str, str]]:
    """Legend items for the states present."""
    return [(COLORS[s], s.lower()) for s in COLORS if states.get(s)]
