"""An inline SVG line chart, for pages that must stand alone (no script, no other file): the
chart of ``nnx-compat report``."""

from __future__ import annotations

import datetime
import html
import math
from collections.abc import Sequence
from typing import Final

__all__ = ["line_chart", "nice_step"]

#: The chart's size and the margins around the plot (the axes' labels are in the margins).
_WIDTH, _HEIGHT = 820, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 56, 20, 64
#: The least distance between two labels under the x axis (a date, or 14 characters).
_LABEL_GAP: Final = 96

#: A line: its name, its colour (any SVG paint: ``currentColor`` follows the text), its values.
Series = tuple[str, str, Sequence[int]]


def nice_step(span: float, ticks: int = 5) -> float:
    """A step of 1, 2 or 5 times a power of ten, at least 1, that cuts ``span`` into about
    ``ticks`` parts."""
    raw = max(span, 1.0) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(f * power for f in (1.0, 2.0, 5.0, 10.0) if raw <= f * power * (1 + 1e-9))
    return max(1.0, step)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _short(label: str, width: int = 14) -> str:
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def _xs(points: Sequence[tuple[str, datetime.datetime | None]], width: float) -> list[float]:
    """The points' x: by date where every point has one, else evenly in order."""
    stamps = [date.timestamp() for _, date in points if date is not None]
    if len(stamps) == len(points):
        low, high = min(stamps), max(stamps)
        if high > low:
            return [_LEFT + width * (s - low) / (high - low) for s in stamps]
    if len(points) == 1 or len(stamps) == len(points):  # one point, or all at one time
        return [_LEFT + width / 2] * len(points)
    return [_LEFT + width * i / (len(points) - 1) for i in range(len(points))]


def line_chart(
    points: Sequence[tuple[str, datetime.datetime | None]],
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    unit: str,
    element_id: str,
    title: str,
) -> str:
    """An SVG line chart with its legend (an HTML list after it).

    Args:
        points: Each point's label and date, in order; x is the date where every point has
            one, else the order. A point's tick shows its date, else its label (``.json``
            left out); ticks that would overlap are left out.
        series: The lines, the first drawn on top and thicker (a total); each has a value per
            point, and each value a circle whose tooltip (``<title>``) names the point, the
            line and the value in ``unit``.
        x_label: The x axis's title.
        y_label: The y axis's title.
        unit: What the values count (singular: ``call site``).
        element_id: The ``id`` of the ``<svg>``.
        title: The chart's accessible title.
    """
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    xs = _xs(points, plot_w)
    top_value = max((max(values, default=0) for _, _, values in series), default=0)
    y_step = nice_step(top_value)
    y_max = max(y_step, y_step * math.ceil(top_value / y_step))
    base = _TOP + plot_h

    def y_of(value: float) -> float:
        return base - plot_h * value / y_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{_e(element_id)}" width="{_WIDTH}" '
        f'height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-labelledby="{_e(element_id)}-title"><title id="{_e(element_id)}-title">'
        f"{_e(title)}</title>"
    ]
    for tick in range(round(y_max / y_step) + 1):
        value, y = tick * y_step, y_of(tick * y_step)
        out.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{int(value):,}</text>'
        )
    out.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{base}" y2="{base}"/>'
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{base}"/>'
    )
    last = -math.inf
    for x, (label, date) in zip(xs, points, strict=True):
        if x - last < _LABEL_GAP:
            continue  # no tick label over another
        last = x
        text = (
            date.strftime("%Y-%m-%d") if date is not None else _short(label.removesuffix(".json"))
        )
        out.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 5}"/>'
            f'<text x="{x:.1f}" y="{base + 20}" text-anchor="middle">{_e(text)}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{_LEFT + plot_w / 2:.1f}" y="{_HEIGHT - 12}" '
        f'text-anchor="middle">{_e(x_label)}</text><text class="axis-label" '
        f'transform="translate(16 {_TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{_e(y_label)}</text>"
    )
    for index, (name, color, values) in reversed(list(enumerate(series))):  # the first on top
        coords = [(x, y_of(v)) for x, v in zip(xs, values, strict=True)]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(
            f'<polyline class="series" data-series="{_e(name)}" fill="none" '
            f'stroke="{_e(color)}" stroke-width="{2 if index else 3}" stroke-linejoin="round" '
            f'points="{line}"/>'
        )
        for (x, y), value, (label, date) in zip(coords, values, points, strict=True):
            when = f"{label} ({date:%Y-%m-%d})" if date is not None else label
            count = f"{value:,} {unit}" + ("" if value == 1 else "s")
            out.append(
                f'<circle class="point" data-series="{_e(name)}" cx="{x:.1f}" cy="{y:.1f}" '
                f'r="{3 if index else 4}" fill="{_e(color)}"><title>{_e(when)}: {_e(name)}, '
                f"{count}</title></circle>"
            )
    out.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{_e(color)}"></span>{_e(name)}</li>'
        for name, color, _ in series
    )
    return "".join(out) + f'<ul class="legend">{legend}</ul>'
