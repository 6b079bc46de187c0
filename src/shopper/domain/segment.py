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
