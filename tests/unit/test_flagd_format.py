"""The experiment as a flagd flag file: the JSON both ways, the errors, the atomic write,
and the change log beside the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from openfeature.contrib.tools.flagd.core import FlagdCore

from shopper.adapters.flag_audit import audit_path, recent_changes, record_change
from shopper.adapters.flagd_format import (
    SCHEMA,
    from_flagd,
    read_flag_file,
    to_flagd,
    write_flag_file,
)
from shopper.domain.experiment import (
    DEFAULT_EXPERIMENT,
    PROMOTED,
    Experiment,
    ExperimentError,
    Variant,
)

SPLIT = Experiment(
    (Variant("champion", PROMOTED, 98), Variant("challenger", "v2", 2), Variant("old", "v1", 0)),
    (Variant("shadow", "v3"),),
)


def test_the_file_is_flagds_format_with_the_shorthand_split_and_a_static_shadows_flag() -> None:
    assert to_flagd(SPLIT) == {
        "$schema": SCHEMA,
        "flags": {
            "shopper-variant": {
                "state": "ENABLED",
                "variants": {"champion": PROMOTED, "challenger": "v2", "old": "v1"},
                "defaultVariant": "champion",
                "targeting": {"fractional": [["champion", 98], ["challenger", 2], ["old", 0]]},
            },
            "shopper-shadows": {
                "state": "ENABLED",
                "variants": {"shadows": {"shadow": "v3"}},
                "defaultVariant": "shadows",
            },
        },
    }
    assert "shopper-shadows" not in to_flagd(DEFAULT_EXPERIMENT)["flags"]


def test_flagds_core_reads_it_and_serves_the_shadows_map() -> None:
    core = FlagdCore()
    core.set_flags(json.dumps(to_flagd(SPLIT)))
    details = core.resolve_object_value("shopper-shadows", {})
    assert details.value == {"shadow": "v3"}


@pytest.mark.parametrize("experiment", [SPLIT, DEFAULT_EXPERIMENT])
def test_it_reads_back_equal_through_json(experiment: Experiment) -> None:
    assert from_flagd(json.loads(json.dumps(to_flagd(experiment)))) == experiment


def variant_flag(**changes: Any) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "state": "ENABLED",
        "variants": {"champion": PROMOTED, "challenger": "v2"},
        "defaultVariant": "champion",
        "targeting": {"fractional": [["champion", 98], ["challenger", 2]]},
    }
    flag.update(changes)
    return {"flags": {"shopper-variant": flag}}


def test_the_champion_is_the_default_variant_wherever_it_stands_in_the_split() -> None:
    data = variant_flag(targeting={"fractional": [["challenger", 2], ["champion", 98]]})
    assert [v.name for v in from_flagd(data).variants] == ["champion", "challenger"]


def test_a_flag_without_targeting_serves_the_default_variant_to_everyone() -> None:
    experiment = from_flagd(variant_flag(targeting=None))
    assert [(v.name, v.weight) for v in experiment.variants] == [
        ("champion", 100),
        ("challenger", 0),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "the flag file must be a JSON object, not an array"),
        ({}, '"flags" is missing'),
        ({"flags": {"other": {}}}, 'flag "shopper-variant" is missing'),
        (variant_flag(state="DISABLED"), '"state": "ENABLED"'),
        (variant_flag(variants={"champion": 3}), 'variant "champion" must name a model'),
        (variant_flag(defaultVariant="x"), '"defaultVariant" must name the champion'),
        (variant_flag(targeting={"if": [True, "champion"]}), '"targeting" must be'),
        (
            variant_flag(targeting={"fractional": [{"var": "email"}, ["champion", 100]]}),
            'each "fractional" entry must be ["<variant>", <percent>]',
        ),
        (
            variant_flag(targeting={"fractional": [["champion", 98], ["x", 2]]}),
            "names 'x', which is not a variant",
        ),
        (
            variant_flag(targeting={"fractional": [["champion", 97.5], ["challenger", 2.5]]}),
            'each "fractional" entry must be',
        ),
        (
            variant_flag(targeting={"fractional": [["champion", 49], ["challenger", 1]]}),
            "weights must sum to 100, not 50",
        ),
        (
            {
                "flags": {
                    **variant_flag()["flags"],
                    "shopper-shadows": {
                        "state": "ENABLED",
                        "variants": {"a": {}, "b": {}},
                        "defaultVariant": "a",
                    },
                }
            },
            "must have one static variant",
        ),
    ],
)
def test_anything_else_is_refused_saying_why(data: object, message: str) -> None:
    with pytest.raises(ExperimentError) as raised:
        from_flagd(data)
    assert message in str(raised.value)


def test_no_file_is_the_default_experiment(tmp_path: Path) -> None:
    assert read_flag_file(tmp_path / "flags.json") == DEFAULT_EXPERIMENT


def test_a_file_that_is_not_json_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text("{nope")
    with pytest.raises(ExperimentError, match=r"the flag file .*flags.json is not JSON"):
        read_flag_file(path)


def test_a_written_file_reads_back_and_holds_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "flags.json"
    write_flag_file(path, SPLIT)
    assert read_flag_file(path) == SPLIT
    assert json.loads(path.read_text())["$schema"] == SCHEMA
    assert [p.name for p in path.parent.iterdir()] == ["flags.json"]  # no temp file left


def test_a_bad_definition_is_not_written_and_the_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_flag_file(path, SPLIT)
    before = path.read_bytes()
    bad = Experiment((Variant("champion", PROMOTED, 98), Variant("challenger", "v9", 2)))
    with pytest.raises(ExperimentError, match="unknown model 'v9'"):
        write_flag_file(path, bad, known_models=["v2"])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["flags.json"]


def test_each_write_moves_the_mtime_on_so_a_file_watcher_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_flag_file(path, DEFAULT_EXPERIMENT)
    future = path.stat().st_mtime_ns + 10_000_000_000  # a clock that went back, or one tick
    os.utime(path, ns=(future, future))
    write_flag_file(path, SPLIT)
    assert path.stat().st_mtime_ns > future


def test_changes_are_logged_beside_the_flag_file_and_read_back_last_ones_last(
    tmp_path: Path,
) -> None:
    flags = tmp_path / "flags.json"
    assert recent_changes(flags) == []
    for i in range(12):
        record_change(flags, "ramp", "challenger", f"step {i}", by="ops", percent=i)
    entry = record_change(flags, "kill", "challenger", "conversion fell", by="guardrail")
    assert audit_path(flags) == tmp_path / "flags.json.log.jsonl"
    with audit_path(flags).open("a") as fh:
        fh.write("not json\n")
    changes = recent_changes(flags, last=3)
    assert [c["reason"] for c in changes] == ["step 10", "step 11", "conversion fell"]
    assert changes[-1] == entry
    assert set(entry) == {"at", "action", "variant", "reason", "by"}
    assert changes[0]["percent"] == 10
