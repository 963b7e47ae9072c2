"""The :class:`Explorer`: controls, a status line and a figure that redraws when a control is released.

Every widget of the course (:mod:`dml_lesson.teaching.widgets`) is an ``Explorer``: each control redraws only when
released (``continuous_update=False``); the explorer reruns the experiment, draws the figure with the same function
the notebook used for its static figure, and writes a status line (running, converged, diverged at step k;
stopped, when the learner pressed Stop during the redraw). Tests drive an explorer from Python by setting
``explorer.controls[name].value``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w
from IPython.display import Image, clear_output, display
from matplotlib.figure import Figure

from ..plots.base import to_png
from ..status import COLOURS


def in_kernel() -> bool:
    """True inside a Jupyter kernel (outside one, e.g. in tests, nothing is displayed)."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


STOPPED = "<b style='color:#b60'>stopped (interrupted)</b> — move a slider to run again"
"""The status line after Stop (KeyboardInterrupt) during a redraw."""


class Explorer:
    """Controls + status line + figure; ``step(values) -> (Figure, status)`` does the work of one redraw.

    With ``redraw_into=True`` the step is called as ``step(values, into)``, ``into`` the figure of the last
    redraw (None the first time), for a figure function that draws into it again
    (:func:`~dml_lesson.teaching.plots.base.recycle`).
    """

    def __init__(self, controls: dict[str, w.ValueWidget], step: Callable[..., tuple[Figure, str]],
                 redraw_into: bool = False):
        self.controls, self.figure = controls, None
        self._step = (lambda values: step(values, self.figure)) if redraw_into else step
        self.status = w.HTML()
        self.output = w.Output()
        self.png, self.redraws, self.seconds = b"", 0, 0.0
        for control in controls.values():
            control.continuous_update = False
            control.style.description_width = "initial"
            control.observe(self.on_change, names="value")
        self.widget = w.VBox([w.HBox(list(controls.values())), self.status, self.output])
        self.update()

    @property
    def values(self) -> dict[str, Any]:
        """The controls' current values."""
        return {name: c.value for name, c in self.controls.items()}

    def update(self) -> None:
        """Rerun and redraw at the current values (called on every slider release).

        A Stop (KeyboardInterrupt) or an unexpected error during the redraw is shown on the status line, then
        raised on; the next redraw draws a new figure, not into one left half drawn.
        """
        self.status.value = "<i>running…</i>"
        try:
            self._redraw()
        except KeyboardInterrupt:
            self.figure = None
            self.status.value = STOPPED
            raise
        except BaseException as exc:
            self.figure = None
            self.status.value = (f"<b style='color:#b00'>failed:</b> {type(exc).__name__}: {exc} "
                                 "<small>(see the log; move a slider to run again)</small>")
            raise

    def _redraw(self) -> None:
        start = time.perf_counter()
        try:
            fig, status = self._step(self.values)
        except (ValueError, TypeError, RuntimeError, TimeoutError, ConnectionError) as exc:
            self.status.value = f"<b style='color:#b00'>error:</b> {exc}"
            return
        self.png, self.figure = to_png(fig), fig
        self.seconds = time.perf_counter() - start
        self.redraws += 1
        if in_kernel():
            with self.output:
                clear_output(wait=True)
                display(Image(self.png))
        color = COLOURS[getattr(status, "severity", "ok")]
        self.status.value = f"<span style='color:{color}'>{status}</span> <small>({self.seconds:.2f} s)</small>"

    def on_change(self, change: dict[str, Any]) -> None:
        """What a control calls when it is released: one redraw. A widget that needs more (notebook 12's network
        presets) unobserves this and observes its own handler, which ends with :meth:`update`."""
        self.update()

    def _ipython_display_(self) -> None:
        display(self.widget)
