"""The status line under a figure: its words and how good or bad the regime they describe is (every notebook's widgets).

A :class:`Status` is a ``str`` (notebooks print it as the verdict under a static figure) that also carries a
``severity``: ``"ok"`` (converging, as intended), ``"warn"`` (a regime the text warns about: oscillating, slow, a
floor far above the best, a loss that grows slowly) or ``"bad"`` (diverged, or a loss that grows every step). The
explorer colours its status line by the severity, never by searching the text for a word.
"""

from __future__ import annotations

SEVERITIES = ("ok", "warn", "bad")
"""From best to worst."""

COLOURS = {"ok": "#060", "warn": "#b60", "bad": "#b00"}
"""The status line's colour for each severity (green, amber, red)."""


class Status(str):
    """A status line's text with its severity (``"ok"``, ``"warn"`` or ``"bad"``).

    Examples
    --------
    >>> s = Status("lr = 2.02: diverged at step 7", "bad")
    >>> s.severity, s.startswith("lr")
    ('bad', True)
    """

    severity: str

    def __new__(cls, text: str, severity: str = "ok") -> Status:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
        obj = super().__new__(cls, text)
        obj.severity = severity
        return obj

    def __repr__(self) -> str:
        return f"Status({str(self)!r}, {self.severity!r})"


def worst(*statuses: str) -> str:
    """The worst severity among ``statuses`` (a plain ``str`` counts as ``"ok"``)."""
    return max((getattr(s, "severity", "ok") for s in statuses), key=SEVERITIES.index, default="ok")


def join(parts: list[str], sep: str = "; ") -> Status:
    """Join status parts into one :class:`Status` whose severity is the worst of the parts'."""
    return Status(sep.join(parts), worst(*parts))
