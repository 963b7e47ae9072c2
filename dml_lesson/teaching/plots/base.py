"""What every figure of the course shares: the figure factory, colours, log axes with plain labels, PNG export.

Figures use matplotlib's object API (no pyplot state) with fixed margins; each ``*_figure`` function in
:mod:`dml_lesson.teaching.plots` returns a new ``Figure`` or redraws into one (``into=``, :func:`recycle`).
"""

from __future__ import annotations

import io
import re
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation

DPI = 90
"""Fixed margins instead of matplotlib's constrained layout: it halves the time a widget takes to redraw."""

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 9.0, height: float = 3.4,
               into: Figure | None = None, **kw: Any) -> Figure:
    """A figure with a grid of axes (``fig.axes``), sized for a notebook column.

    ``into``: the figure of an explorer's last frame; when it has the same size and number of axes it is emptied
    and returned (:func:`recycle`) instead of a new one.
    """
    if into is not None and len(into.axes) == ncols * nrows and tuple(into.get_size_inches()) == (width, height):
        return recycle(into)
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots(nrows, ncols, squeeze=False, **kw)
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.25 / width, bottom=0.55 / height, top=1 - 0.35 / height,
                        wspace=0.3, hspace=0.4)
    return fig


def recycle(fig: Figure) -> Figure:
    """Empty ``fig``'s axes of what was drawn in them, keeping the axes themselves, to draw the next frame of an
    explorer into (every explorer of notebooks 01 to 12 but notebook 03's and notebook 12's topology frames).

    A new figure spends most of its drawing time creating tick marks and labels (measured: about 45% of notebook
    01's redraw); recycled axes keep theirs. The result is drawn pixel for pixel like a new figure (tested).
    """
    for ax in fig.axes:
        for container in list(ax.containers):  # bars: the legend would still list a container left behind
            container.remove()
        for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts, *ax.images]:
            artist.remove()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        for loc in ("left", "center", "right"):
            ax.set_title("", loc=loc)
        ax.set_xscale("linear")  # as a new axes starts: data limits depend on the scale at the time of plotting
        ax.set_yscale("linear")
        ax.relim()
        ax.set_autoscale_on(True)
    return fig


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class PlainLogFormatter(LogFormatterSciNotation):
    """Log-axis tick labels as plain text, ``10⁻³`` and ``2×10⁴``, where matplotlib writes mathtext.

    The same labels, drawn without parsing TeX: matplotlib parses every mathtext label again whenever its small
    cache misses, which a redraw with new axis limits does. Measured on notebook 12's scaling explorer (two
    log-log panels): the parsing was more than half of a redraw.
    """

    def __call__(self, x: float, pos: int | None = None) -> str:
        label = super().__call__(x, pos)
        math = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
        if math is None:
            return label
        body = re.sub(r"\^\{(-?\d+)\}", lambda m: m.group(1).translate(_SUPERSCRIPTS), math.group(1))
        return body.replace("\\times", "×").replace("-", "−")


def log_scale(ax: Any, axis: str = "y", base: float = 10) -> None:
    """Put ``ax``'s ``"x"`` or ``"y"`` axis on a log scale with plain-text tick labels (:class:`PlainLogFormatter`).
    Every log axis of the course's figures is set this way."""
    getattr(ax, f"set_{axis}scale")("log", base=base)
    scaled = getattr(ax, f"{axis}axis")
    scaled.set_major_formatter(PlainLogFormatter(base))
    scaled.set_minor_formatter(PlainLogFormatter(base, labelOnlyBase=False))


def to_png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes (what a widget displays and a test compares)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
