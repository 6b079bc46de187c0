"""Popularity segments come from a fixed set of dimensions and values; any other value
a shopper states counts as `other`, so nobody can make segments up."""

from __future__ import annotations

from shopper.config import load_config
from shopper.domain.segment import (
    DEFAULT_SEGMENTS,
    GLOBAL_SEGMENT,
    ISO_COUNTRIES,
    SegmentPolicy,
    popularity_segments,
)


def test_known_values_have_segments_of_their_own_most_specific_first() -> None:
    assert popularity_segments("DE", "Mobile") == ["country:de", "device:mobile", GLOBAL_SEGMENT]
    assert popularity_segments(None, None) == [GLOBAL_SEGMENT]


def test_made_up_values_fold_into_other() -> None:
    segments = {s for n in range(10_000) for s in popularity_segments(f"x{n}", f"toaster-{n}")}
    assert segments == {"country:other", "device:other", GLOBAL_SEGMENT}


def test_the_default_countries_are_the_iso_codes() -> None:
    assert len(ISO_COUNTRIES) == 249
    assert {"gb", "de", "us", "jp"} <= ISO_COUNTRIES
    assert "uk" not in ISO_COUNTRIES  # the United Kingdom's ISO code is GB
    assert DEFAULT_SEGMENTS.devices == {"desktop", "mobile", "tablet", "app"}


def test_settings_name_the_values_and_an_environment_variable_lists_them() -> None:
    config = load_config(
        {"SHOPPER_SEGMENT_COUNTRIES": "GB, de", "SHOPPER_SEGMENT_DEVICES": "kiosk"}
    )
    policy = SegmentPolicy.of(config.segment_countries, config.segment_devices)
    assert policy.segments("gb", "kiosk") == ["country:gb", "device:kiosk", GLOBAL_SEGMENT]
    assert policy.segments("fr", "mobile") == ["country:other", "device:other", GLOBAL_SEGMENT]
    default = load_config({})
    assert SegmentPolicy.of(default.segment_countries, default.segment_devices) == DEFAULT_SEGMENTS


def test_a_policy_knows_the_segments_it_makes() -> None:
    policy = SegmentPolicy.of(["gb"], ["mobile"])
    made = {
        s
        for c in ("gb", "zz", None)
        for d in ("mobile", "fridge", None)
        for s in policy.segments(c, d)
    }
    assert all(policy.makes(s) for s in made)
    assert made == {"country:gb", "country:other", "device:mobile", "device:other", GLOBAL_SEGMENT}
    for other in ("country:zz", "device:fridge", "referrer:search", "hour:0-5", "country"):
        assert not policy.makes(other)
