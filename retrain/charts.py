"""The report's charts: inline SVG drawn from a template (text stays text), and the confusion matrix as a PNG.

Lines, bars and axes are a few rectangles and polylines; a plotting library took longer to import (0.4-0.6 s) than
the charts take to draw, on every run and every pull request's gate (issue 29). The geometry is computed here, in
pixels; ``templates/chart.svg`` draws it (rendered by ``retrain.reports``, with the page).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TITLE, TICK = 14, 12  # font sizes, px
LEGEND = 28  # the legend row's height above the panels
MARGIN = {"left": 48, "right": 22, "top": 24, "bottom": 40}  # around a panel's plot area


@dataclass(frozen=True)
class Series:
    """One line (or set of bars) of a chart, in data units."""

    label: str
    colour: str
    xs: Sequence[float]
    ys: Sequence[float]
    width: float = 1.5
    opacity: float = 1.0
    markers: bool = False


@dataclass(frozen=True)
class Axis:
    """A nice axis: its ticks span the data, and the axis spans its ticks."""

    ticks: tuple[float, ...]
    text: Callable[[float], str]

    @classmethod
    def over(cls, low: float, high: float, percent: bool = False, integer: bool = False, count: int = 6) -> Axis:
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5
        raw = (high - low) / (count - 1)
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
        if integer:
            step = max(1.0, round(step))
        first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
        ticks = tuple(round(i * step, 12) for i in range(first, last + 1))
        shown = step * 100 if percent else step  # as printed: enough decimals for the step (2.5 needs one more)
        power = math.floor(math.log10(shown) + 1e-9)
        decimals = max(0, -power + (1 if round(shown / 10**power, 6) == 2.5 else 0))
        if percent:
            return cls(ticks, lambda value: f"{value * 100:.{decimals}f}%")
        return cls(ticks, lambda value: f"{value:.{decimals}f}")

    @property
    def low(self) -> float:
        return self.ticks[0]

    @property
    def high(self) -> float:
        return self.ticks[-1]


@dataclass(frozen=True)
class Panel:
    """One plot: a title, axes, lines or bars, and an optional dashed vertical mark (the kept epoch)."""

    title: str
    x_label: str
    series: tuple[Series, ...]
    x: Axis
    y: Axis
    y_label: str = ""
    bars: bool = False
    mark: tuple[float, str] | None = None  # x, legend label


def _placed(panel: Panel, left: float, top: float, width: float, height: float) -> dict:
    """``panel`` in pixels: the plot area's box, tick positions and labels, and each series as points or bars."""
    inner_left, inner_top = left + MARGIN["left"], top + MARGIN["top"]
    inner_width = width - MARGIN["left"] - MARGIN["right"]
    inner_height = height - MARGIN["top"] - MARGIN["bottom"]

    def px(x: float) -> float:
        return inner_left + (x - panel.x.low) / (panel.x.high - panel.x.low) * inner_width

    def py(y: float) -> float:
        return inner_top + inner_height - (y - panel.y.low) / (panel.y.high - panel.y.low) * inner_height

    drawn = []
    for index, series in enumerate(panel.series):
        if panel.bars:  # bars side by side within each bin: xs are the bins' edges
            bin_width = inner_width * (series.xs[1] - series.xs[0]) / (panel.x.high - panel.x.low)
            bar = bin_width * 0.8 / len(panel.series)
            base = py(panel.y.low)
            rects = [(round(px(x) + bin_width * 0.1 + index * bar, 1), round(py(y), 1), round(bar, 1),
                      round(base - py(y), 1)) for x, y in zip(series.xs, series.ys, strict=False) if y > 0]  # fmt: skip
            drawn.append({"series": series, "rects": rects})
        else:
            points = [(round(px(x), 1), round(py(y), 1)) for x, y in zip(series.xs, series.ys, strict=True)]
            drawn.append({"series": series, "points": points, "polyline": " ".join(f"{x},{y}" for x, y in points)})
    return {
        "panel": panel,
        "box": (inner_left, inner_top, inner_width, inner_height),
        "x_ticks": [(round(px(tick), 1), panel.x.text(tick)) for tick in panel.x.ticks],
        "y_ticks": [(round(py(tick), 1), panel.y.text(tick)) for tick in panel.y.ticks],
        "drawn": drawn,
        "mark": (round(px(panel.mark[0]), 1), panel.mark[1]) if panel.mark else None,
    }


def chart_layout(panels: Sequence[Panel], width: int, height: int, legend_inside: bool = False) -> dict:
    """What ``templates/chart.svg`` draws: panels side by side, in pixels, with one legend above them (or inside the
    first panel's top left)."""
    top = 0 if legend_inside else LEGEND
    panel_width = width / len(panels)
    placed = [_placed(panel, i * panel_width, top, panel_width, height - top) for i, panel in enumerate(panels)]
    kind = "box" if panels[0].bars else "line"
    entries = [(series.label, series.colour, series.width, series.opacity, kind) for series in panels[0].series]
    if panels[0].mark:
        entries.append((panels[0].mark[1], "#555555", 1, 1, "dashed"))
    if legend_inside:  # stacked in the first panel's top left corner
        left, top = placed[0]["box"][:2]
        at = [(left + 10, top + 10 + 18 * index) for index in range(len(entries))]
    else:  # in a row, centred above the panels
        widths = [28 + len(entry[0]) * TICK * 0.6 + 24 for entry in entries]
        starts = np.cumsum([0, *widths[:-1]]) + (width - sum(widths)) / 2
        at = [(round(float(start), 1), 14) for start in starts]
    legend = [(*entry, x, y) for entry, (x, y) in zip(entries, at, strict=True)]
    return {"width": width, "height": height, "panels": placed, "legend": legend, "title": TITLE, "tick": TICK}


def _blue(share: float) -> tuple[int, int, int]:
    """A share in [0, 1] as a blue from near white to navy (as matplotlib's Blues)."""
    stops = np.array([[247, 251, 255], [107, 174, 214], [8, 48, 107]], dtype=float)
    position = share * 2
    low = min(int(position), 1)
    return tuple(int(round(v)) for v in stops[low] + (stops[low + 1] - stops[low]) * (position - low))


def confusion_png(counts: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """The confusion matrix as a picture: counts in blue cells (darker, more), true classes as rows."""
    font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=13)
    cell = 56
    names = [small.getbbox(label)[2] for label in labels] or [0]
    left = max(names) + 40
    bottom = int(max(names) * 0.75) + 50
    size = len(labels) * cell
    image = Image.new("RGB", (left + size + 30, 40 + size + bottom), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left + size / 2, 20), title, fill="black", font=font, anchor="mm")
    most = max(int(counts.max()), 1)
    for row, counted in enumerate(counts):
        for column, count in enumerate(counted):
            x, y = left + column * cell, 40 + row * cell
            draw.rectangle((x, y, x + cell, y + cell), fill=_blue(count / most))
            colour = "white" if count / most > 0.5 else "black"
            draw.text((x + cell / 2, y + cell / 2), str(int(count)), fill=colour, font=font, anchor="mm")
    draw.rectangle((left, 40, left + size, 40 + size), outline="black")
    for index, label in enumerate(labels):
        middle = index * cell + cell / 2
        draw.text((left - 6, 40 + middle), label, fill="black", font=small, anchor="rm")
        _rotated(image, label, small, (left + middle, 40 + size + 6))
    draw.text((left + size / 2, image.height - 14), "Predicted label", fill="black", font=font, anchor="mm")
    _rotated(image, "True label", font, (12, 40 + size / 2), angle=90, anchor="centre")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _rotated(image: Image.Image, text: str, font, at: tuple[float, float], angle: int = 45, anchor: str = "top right"):
    """Text turned by ``angle`` degrees, pasted with its top right corner (or centre) at ``at``."""
    box = font.getbbox(text)
    label = Image.new("L", (box[2] + 4, box[3] + 4), 0)
    ImageDraw.Draw(label).text((2, 2), text, fill=255, font=font)
    turned = label.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    if anchor == "centre":
        x, y = at[0] - turned.width / 2, at[1] - turned.height / 2
    else:
        x, y = at[0] - turned.width, at[1]
    image.paste((0, 0, 0), (int(x), int(y)), turned)
