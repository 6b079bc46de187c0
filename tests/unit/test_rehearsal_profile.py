"""Rehearsal profiles: the bundled ones load, bad ones fail with errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopper.rehearsal.profile import ProfileError, bundled_profiles, load_profile, parse_profile

GOOD = """
name = "tiny"
[shoppers]
count = 10
[catalog]
items = 5
[traffic]
hold_s = 4
warmup_s = 2
[traffic.base]
events_per_s = 1
pages_per_s = 1
[traffic.peak]
events_per_s = 10
pages_per_s = 5
[mix]
view = 1
[sell_out]
items = 2
from_s = 1
to_s = 3
"""


def test_bundled_profiles_load() -> None:
    assert {"flash-sale", "smoke"} <= set(bundled_profiles())
    flash = load_profile("flash-sale")
    assert flash.name == "flash-sale"
    assert flash.traffic.peak.events_per_s > flash.traffic.base.events_per_s
    assert flash.viral is not None and flash.sell_out.items > 0
    assert load_profile("smoke").duration_s < 15


def test_a_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(GOOD)
    profile = load_profile(str(path))
    assert profile.name == "tiny"
    assert profile.duration_s == 6
    assert profile.mix.weights()["view"] == 1


def test_an_unknown_bundled_name_lists_the_bundled_ones() -> None:
    with pytest.raises(ProfileError, match=r"no bundled profile 'black-friday'.*flash-sale"):
        load_profile("black-friday")


def test_a_missing_file() -> None:
    with pytest.raises(ProfileError, match=r"cannot read profile nowhere/x.toml"):
        load_profile("nowhere/x.toml")


def test_not_toml() -> None:
    with pytest.raises(ProfileError, match=r"mine is not valid TOML"):
        parse_profile("name = ", "mine")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("hold_s = 4", "hold_s = 0"), r"traffic\.hold_s: Input should be greater than 0"),
        (("[mix]\nview = 1", "[mix]\nview = 0"), r"mix: .*at least one event type"),
        (("[mix]\nview = 1", "[mix]\nlook = 1"), r"mix\.look: Extra inputs are not permitted"),
        (("count = 10", "count = -1"), r"shoppers\.count: Input should be greater than or equal"),
        (("to_s = 3", "to_s = 60"), r"sell_out\.to_s = 60\.0 is after the run's end \(6\.0 s\)"),
        (("to_s = 3", "to_s = 0.5"), r"sell_out: .*to_s is before from_s"),
        (("items = 2", "items = 5"), r"5 items sell out but the catalog has 5"),
        (("[traffic.peak]\nevents_per_s = 10\n", "[traffic.peak]\n"), r"traffic\.peak\.events"),
    ],
)
def test_an_invalid_profile_names_the_field(change: tuple[str, str], reason: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ProfileError, match=r"(?s)mine is not a valid profile:.*" + reason):
        parse_profile(GOOD.replace(old, new, 1), "mine")


def test_scaled_keeps_the_shape() -> None:
    flash = load_profile("flash-sale")
    short = flash.scaled(seconds=flash.duration_s / 4, rate=0.5)
    assert short.duration_s == pytest.approx(flash.duration_s / 4)
    assert short.traffic.hold_s == pytest.approx(flash.traffic.hold_s / 4)
    assert short.sell_out.to_s == pytest.approx(flash.sell_out.to_s / 4)
    assert flash.viral is not None and short.viral is not None
    assert short.viral.start_s == pytest.approx(flash.viral.start_s / 4)
    assert short.traffic.peak.pages_per_s == pytest.approx(flash.traffic.peak.pages_per_s / 2)
    # events fall by 1/4 * 1/2: so do shoppers, so each still sends as many
    assert short.shoppers.count == round(flash.shoppers.count / 8)
    assert short.freshness == flash.freshness  # about the server: never scaled


def test_scaled_refuses_nonsense() -> None:
    with pytest.raises(ProfileError, match="above 0"):
        load_profile("smoke").scaled(seconds=0)
