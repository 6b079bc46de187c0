"""Cold-start tiers: which kind of model a shopper's data supports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    """Anonymous or no history: segment popularity; a few interactions: content-based;
    enough history: collaborative filtering."""

    ANONYMOUS = "anonymous"
    FEW = "1-9"
    MANY = "10+"


# The model that leads each tier's list (the tier's blend may add others, as tuned).
LEAD_MODEL: dict[Tier, str] = {
    Tier.ANONYMOUS: "popularity",
    Tier.FEW: "content",
    Tier.MANY: "collaborative",
}


@dataclass(frozen=True, slots=True)
class TierThresholds:
    """`few_from` interactions move a shopper out of the anonymous tier, `many_from` into
    collaborative filtering (defaults 1 and 10)."""

    few_from: int = 1
    many_from: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.few_from <= self.many_from:
            raise ValueError("tier thresholds need 1 <= few_from <= many_from")


DEFAULT_THRESHOLDS = TierThresholds()


def tier_of(interactions: int, thresholds: TierThresholds = DEFAULT_THRESHOLDS) -> Tier:
    """The tier of a shopper with this many interactions (views, carts, purchases...)."""
    if interactions >= thresholds.many_from:
        return Tier.MANY
    if interactions >= thresholds.few_from:
        return Tier.FEW
    return Tier.ANONYMOUS
