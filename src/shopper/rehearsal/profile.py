"""Rehearsal profiles: TOML files saying what traffic to drive, validated with clear errors.

A profile is config, read at the edge, so it is a pydantic model (frozen, no unknown
keys). docs/rehearsal.md describes every field.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shopper.codec import validation_reasons
from shopper.errors import ShopperError

BUNDLED_PACKAGE = "shopper.profiles"


class ProfileError(ShopperError):
    """A profile cannot be found or read, or says something impossible."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ShoppersSpec(_Spec):
    count: int = Field(ge=1, description="distinct shoppers the traffic is spread over")
    signed_in_share: float = Field(0.5, ge=0, le=1, description="shoppers with a user_id")
    taste: float = Field(
        0.6, ge=0, le=1, description="share of a shopper's events in their favourite category"
    )
    session_s: float = Field(
        30.0, gt=0, description="a shopper's visit: their events and pages fall within it"
    )


class CatalogSpec(_Spec):
    items: int = Field(ge=2, description="items the rehearsal upserts before it starts")
    categories: int = Field(8, ge=1)
    stock: int = Field(100, ge=1, description="each item's stock at the start")
    popularity_skew: float = Field(1.0, ge=0, description="Zipf exponent of item popularity")
    price_min: float = Field(5.0, ge=0)
    price_max: float = Field(100.0, ge=0)

    @model_validator(mode="after")
    def _prices(self) -> Self:
        if self.price_max < self.price_min:
            raise ValueError("price_max is below price_min")
        return self


class RateSpec(_Spec):
    events_per_s: float = Field(ge=0, description="shopper events posted per second")
    pages_per_s: float = Field(ge=0, description="recommendation pages read per second")


class TrafficSpec(_Spec):
    base: RateSpec
    peak: RateSpec
    warmup_s: float = Field(0.0, ge=0, description="at the base rate")
    ramp_s: float = Field(0.0, ge=0, description="base to peak, linearly")
    hold_s: float = Field(gt=0, description="at the peak rate")
    cooldown_s: float = Field(0.0, ge=0, description="peak back to base, linearly")
    product_page_share: float = Field(
        0.5, ge=0, le=1, description="page reads made on a product page (context_item)"
    )
    k: int = Field(10, ge=1, le=100, description="items asked per page")
    batch_ms: float = Field(
        20.0, gt=0, le=1000, description="events due within this window go in one POST"
    )

    @property
    def duration_s(self) -> float:
        return self.warmup_s + self.ramp_s + self.hold_s + self.cooldown_s


class MixSpec(_Spec):
    """Relative weights of the shopper event types (normalised; need not sum to 1)."""

    view: float = Field(0.0, ge=0)
    click: float = Field(0.0, ge=0)
    dwell: float = Field(0.0, ge=0)
    add_to_cart: float = Field(0.0, ge=0)
    remove_from_cart: float = Field(0.0, ge=0)
    purchase: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _some(self) -> Self:
        if sum(self.weights().values()) <= 0:
            raise ValueError("give at least one event type a weight above 0")
        return self

    def weights(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in type(self).model_fields}


class ViralSpec(_Spec):
    start_s: float = Field(ge=0, description="when the item goes viral, from the start")
    view_share: float = Field(gt=0, le=1, description="share of views and clicks it takes")
    sell_out_s: float | None = Field(None, ge=0, description="when it sells out, if it does")


class SellOutSpec(_Spec):
    items: int = Field(0, ge=0, description="the most popular items, sold out one by one")
    from_s: float = Field(0.0, ge=0)
    to_s: float = Field(0.0, ge=0)
    grace_ms: float = Field(
        0.0, ge=0, description="pages read this soon after a sell-out's accept are not counted"
    )

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.to_s < self.from_s:
            raise ValueError("to_s is before from_s")
        return self


class FreshnessSpec(_Spec):
    probes: int = Field(8, ge=0, description="dedicated shoppers measuring freshness")
    interval_s: float = Field(1.0, gt=0, description="pause between one probe's events")
    timeout_s: float = Field(10.0, gt=0, description="a list not updated by then is stale")
    poll_ms: float = Field(20.0, gt=0, description="how often a probe re-reads its page")


class Profile(_Spec):
    name: str = Field(min_length=1)
    description: str = ""
    shoppers: ShoppersSpec
    catalog: CatalogSpec
    traffic: TrafficSpec
    mix: MixSpec
    viral: ViralSpec | None = None
    sell_out: SellOutSpec = SellOutSpec()
    freshness: FreshnessSpec = FreshnessSpec()

    @model_validator(mode="after")
    def _fits(self) -> Self:
        duration = self.traffic.duration_s
        sold = self.sell_out.items + (1 if self.viral and self.viral.sell_out_s is not None else 0)
        if sold >= self.catalog.items:
            raise ValueError(f"{sold} items sell out but the catalog has {self.catalog.items}")
        late = {
            "sell_out.to_s": self.sell_out.to_s if self.sell_out.items else 0.0,
            "viral.start_s": self.viral.start_s if self.viral else 0.0,
            "viral.sell_out_s": (self.viral.sell_out_s or 0.0) if self.viral else 0.0,
        }
        for name, at in late.items():
            if at > duration:
                raise ValueError(f"{name} = {at} is after the run's end ({duration} s)")
        return self

    @property
    def duration_s(self) -> float:
        return self.traffic.duration_s

    def scaled(self, seconds: float | None = None, rate: float = 1.0) -> Profile:
        """This profile lasting `seconds` (every phase, timed step and visit in proportion)
        at `rate` times its rates, with shoppers in proportion to the events. Freshness
        settings are about the server: not scaled."""
        if rate <= 0 or (seconds is not None and seconds <= 0):
            raise ProfileError("--seconds and --rate-scale must be above 0")
        f = 1.0 if seconds is None else seconds / self.duration_s
        # As many events per shopper as the full profile: fewer shoppers, shorter visits.
        shoppers = self.shoppers.model_copy(
            update={
                "count": max(1, round(self.shoppers.count * f * rate)),
                "session_s": self.shoppers.session_s * f,
            }
        )
        t = self.traffic
        traffic = t.model_copy(
            update={
                "warmup_s": t.warmup_s * f, "ramp_s": t.ramp_s * f,
                "hold_s": t.hold_s * f, "cooldown_s": t.cooldown_s * f,
                "base": _rates(t.base, rate), "peak": _rates(t.peak, rate),
            }
        )  # fmt: skip
        s = self.sell_out
        sell_out = s.model_copy(update={"from_s": s.from_s * f, "to_s": s.to_s * f})
        viral = self.viral
        if viral is not None:
            at = None if viral.sell_out_s is None else viral.sell_out_s * f
            viral = viral.model_copy(update={"start_s": viral.start_s * f, "sell_out_s": at})
        return self.model_copy(
            update={"shoppers": shoppers, "traffic": traffic, "sell_out": sell_out, "viral": viral}
        )


def _rates(spec: RateSpec, factor: float) -> RateSpec:
    return RateSpec(events_per_s=spec.events_per_s * factor, pages_per_s=spec.pages_per_s * factor)


def bundled_profiles() -> list[str]:
    """Names of the profiles shipped with shopper."""
    folder = resources.files(BUNDLED_PACKAGE)
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name (`flash-sale`), or a TOML file by path."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.exists() or len(path.parts) > 1:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
        return parse_profile(text, str(path))
    bundled = resources.files(BUNDLED_PACKAGE) / f"{name_or_path}.toml"
    if not bundled.is_file():
        known = ", ".join(bundled_profiles())
        raise ProfileError(
            f"no bundled profile {name_or_path!r} (bundled: {known}); "
            "give a path to a .toml file for your own"
        )
    return parse_profile(bundled.read_text(encoding="utf-8"), f"bundled profile {name_or_path}")


def parse_profile(text: str, where: str) -> Profile:
    """Validate a profile's TOML text; `where` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{where} is not valid TOML: {exc}") from None
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        reasons = "\n  ".join(validation_reasons(exc))
        raise ProfileError(f"{where} is not a valid profile:\n  {reasons}") from None
