"""The error a fit raises when the data cannot support it, with a short `kind` that bootstrap reports count by."""

from __future__ import annotations


class FitError(ValueError):
    """A fit the data cannot support. `kind` is a stable phrase without run-specific numbers where possible
    (e.g. "budget 6e+11: concave parabola"), so that failed bootstrap refits can be counted by kind."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or message.splitlines()[0]
