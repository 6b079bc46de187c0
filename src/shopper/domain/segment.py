"""Popularity segments: who counts as 'people like this shopper' when nothing else is known."""

from __future__ import annotations

GLOBAL_SEGMENT = "global"


def popularity_segments(country: str | None, device: str | None) -> list[str]:
    """Segments from most specific to global; the page falls back along this order."""
    out = []
    if country:
        out.append(f"country:{country.lower()}")
    if device:
        out.append(f"device:{device.lower()}")
    return [*out, GLOBAL_SEGMENT]


HOUR_BUCKETS = ((0, 6), (6, 12), (12, 18), (18, 24))


def hour_segment(ts: float) -> str:
    """The hour-of-day segment of a moment (UTC): `hour:0-5`, `hour:6-11`, ..."""
    hour = int(ts // 3600) % 24
    start, end = next(b for b in HOUR_BUCKETS if b[0] <= hour < b[1])
    return f"hour:{start}-{end - 1}"
