"""The reports' charts as inline SVG, drawn here on the server: the same html shows in a browser and prints to pdf
with no JavaScript and nothing fetched. Text is Chinese, in the CJK font the system packages install."""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

__all__ = ["day_bars", "day_curve", "nice_step"]

_W, _H = 720, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 34, 40
_FONT = "'Noto Sans CJK SC','Noto Sans SC','Source Han Sans SC','WenQuanYi Micro Hei',sans-serif"
_CURVE, _CAP, _PROJECTION, _GRID, _OVER = "#1f5fa8", "#c0392b", "#e08e0b", "#d9d9d9", "#c0392b"


def nice_step(top: float, ticks: int = 5) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks` steps up to `top`."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _axis(top: float) -> tuple[float, float]:
    step = nice_step(top)
    return step, step * math.ceil(top / step) if top > 0 else step


def _y(value: float, top: float) -> float:
    return _TOP + (_H - _TOP - _BOTTOM) * (1 - value / top)


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "middle", color: str = "#333") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}" '
            f'font-family="{_FONT}">{escape(text)}</text>')  # fmt: skip


def _frame(title: str, top: float, unit: str) -> list[str]:
    step, _top = _axis(top)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="100%" role="img" '
             f'aria-label="{escape(title)}">', _text(_W / 2, 18, title, 14, color="#111")]  # fmt: skip
    value = 0.0
    while value <= top + 1e-9:
        y = _y(value, top)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" stroke="{_GRID}"/>')
        parts.append(_text(_LEFT - 6, y + 4, f"{value:,.0f}", 11, "end"))
        value += step
    parts.append(_text(14, _TOP - 10, unit, 11, "start"))
    return parts


def day_curve(curve: Sequence[tuple[float, float]], projection: Sequence[tuple[float, float]],
              cap: float | None, title: str) -> str:  # fmt: skip
    """The township's cumulative use through the day (minute 0-1440, kWh), the cap line and the projections."""
    highest = max([cap or 0.0, *(v for _m, v in curve), *(v for _m, v in projection), 1.0])
    _step, top = _axis(highest * 1.05)
    plot_w = _W - _LEFT - _RIGHT

    def x(minute: float) -> float:
        return _LEFT + plot_w * minute / 1440

    parts = _frame(title, top, "千瓦时（kWh）")
    for hour in range(0, 25, 2):
        parts.append(_text(x(hour * 60), _H - _BOTTOM + 16, f"{hour}时", 11))
    parts.append(_text(_W / 2, _H - 6, "时间（当日 0—24 时）", 11))
    if cap is not None:
        y = _y(cap, top)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" stroke="{_CAP}" '
                     'stroke-width="2" stroke-dasharray="8 4"/>')  # fmt: skip
        parts.append(_text(_LEFT + 6, y - 6, f"日上限 {cap:,.0f} kWh", 12, "start", _CAP))
    if projection:
        points = " ".join(f"{x(m):.1f},{_y(v, top):.1f}" for m, v in projection)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{_PROJECTION}" stroke-width="1.6" '
                     'stroke-dasharray="3 3"/>')  # fmt: skip
    if curve:
        points = " ".join(f"{x(m):.1f},{_y(v, top):.1f}" for m, v in curve)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{_CURVE}" stroke-width="2.5"/>')
    legend = [("累计用电", _CURVE, ""), ("当时推算的全天用电", _PROJECTION, "3 3")]
    if cap is not None:
        legend.append(("日上限", _CAP, "8 4"))
    lx = _LEFT + 10
    for name, color, dash in legend:
        y = _TOP + 14
        parts.append(f'<line x1="{lx}" y1="{y}" x2="{lx + 24}" y2="{y}" stroke="{color}" stroke-width="2.5" '
                     f'stroke-dasharray="{dash}"/>')  # fmt: skip
        parts.append(_text(lx + 28, y + 4, name, 12, "start"))
        lx += 40 + 13 * len(name)
    parts.append("</svg>")
    return "\n".join(parts)


def day_bars(days: Sequence[tuple[str, float | None, float | None]], title: str,
             note: str = "红线：日上限；红色柱：超过上限") -> str:  # fmt: skip
    """One bar per day (label, kWh or None for no data, the day's cap or None), the cap marked on each."""
    highest = max([1.0, *(v or 0.0 for _d, v, _c in days), *(c or 0.0 for _d, _v, c in days)])
    _step, top = _axis(highest * 1.05)
    plot_w = _W - _LEFT - _RIGHT
    parts = _frame(title, top, "千瓦时（kWh）")
    n = max(1, len(days))
    width = plot_w / n
    every = max(1, math.ceil(n / 12))
    few = sum(1 for _d, v, _c in days if v is not None) <= 12  # then each bar says its figure, and its day
    for i, (label, value, cap) in enumerate(days):
        x0 = _LEFT + i * width
        if value is not None:
            color = _OVER if cap is not None and value > cap else _CURVE
            y = _y(value, top)
            parts.append(f'<rect x="{x0 + width * 0.15:.1f}" y="{y:.1f}" width="{width * 0.7:.1f}" '
                         f'height="{_H - _BOTTOM - y:.1f}" fill="{color}"/>')  # fmt: skip
            if few:
                above = y
                if cap is not None and 0 <= y - _y(cap, top) < 18:  # the cap just above the bar: clear of it
                    above = _y(cap, top)
                parts.append(_text(x0 + width / 2, above - 4, f"{value:,.0f}", 10, color=color))
                if i % every:
                    parts.append(_text(x0 + width / 2, _H - _BOTTOM + 28, label, 10, color=color))
        if cap is not None:
            y = _y(cap, top)
            parts.append(f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x0 + width:.1f}" y2="{y:.1f}" stroke="{_CAP}" '
                         'stroke-width="2"/>')  # fmt: skip
        if i % every == 0:
            parts.append(_text(x0 + width / 2, _H - _BOTTOM + 16, label, 10))
    parts.append(_text(_W - _RIGHT, _TOP - 10, note, 11, "end", _CAP))
    parts.append("</svg>")
    return "\n".join(parts)
