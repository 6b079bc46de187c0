"""Time windows, defined once. Every window is half-open: `(as_of - length, as_of]`.

All times are epoch seconds (UTC), so the time zone an input timestamp was written in
changes nothing: `2019-10-01T02:00:00+02:00` and `2019-10-01T00:00:00Z` are the same float.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    """A rolling window of `seconds`, ending at (and including) the time it is asked at."""

    name: str
    seconds: float

    def contains(self, ts: float, as_of: float) -> bool:
        """True for `as_of - seconds < ts <= as_of`: an event exactly one window old is out."""
        return as_of - self.seconds < ts <= as_of


WINDOW_1H = Window("1h", 3_600.0)
WINDOW_24H = Window("24h", 86_400.0)
WINDOW_7D = Window("7d", 7 * 86_400.0)

# A session's context looks back at most this far (a session older than a day is over).
SESSION_LOOKBACK = WINDOW_24H
# Trending interest halves every hour.
TRENDING_HALF_LIFE_S = 3_600.0

# The longest window any feature of the entity reads: the incremental engine keeps events
# this young and folds older ones into a summary (`UserCarry`, `ItemCarry`).
USER_HORIZON = WINDOW_7D
ITEM_HORIZON = WINDOW_24H
