"""Trending: items whose live share of interest runs far above what training expected.

Live popularity (decayed over `popularity_half_life_s`, the processor's counters) is
compared with the trained popularity of the same items: an item bought by everyone every
day is popular, not trending; an item nobody looked at yesterday that a tenth of today's
shoppers open is. Pure: the processor passes both in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MIN_LIFT = 2.0  # live share at least this many times the expected share
MIN_LIVE_SHARE = 0.02  # and at least this share of all live interest (not noise)
EXPECTED_FLOOR = 0.001  # an item never seen in training counts as this share


def trending_scores(
    live: Sequence[tuple[str, float]], expected: Mapping[str, float]
) -> dict[str, float]:
    """Items trending now, scored in (0, 1] by how far their live share exceeds the
    expected one (`expected`: trained popularity per item, any scale)."""
    live_total = sum(w for _, w in live)
    expected_total = sum(expected.values())
    if live_total <= 0:
        return {}
    lifts: dict[str, float] = {}
    for item, weight in live:
        share = weight / live_total
        if share < MIN_LIVE_SHARE:
            continue
        base = expected.get(item, 0.0) / expected_total if expected_total > 0 else 0.0
        lift = share / max(base, EXPECTED_FLOOR)
        if lift >= MIN_LIFT:
            lifts[item] = lift
    top = max(lifts.values(), default=0.0)
    return {item: lift / top for item, lift in lifts.items()} if top > 0 else {}
