"""The experiment definition: what `check` refuses (and says), and the ramp and kill
arithmetic of `with_share`."""

from __future__ import annotations

import pytest

from shopper.domain.experiment import (
    BASELINE,
    CHAMPION,
    DEFAULT_EXPERIMENT,
    PROMOTED,
    Experiment,
    ExperimentError,
    Variant,
    check,
    with_share,
)

SPLIT = Experiment(
    (Variant("champion", PROMOTED, 90), Variant("a", "v1", 6), Variant("b", "v2", 4)),
    (Variant("shadow", "v3"),),
)


def weights(experiment: Experiment) -> dict[str, int]:
    return {v.name: v.weight for v in experiment.variants}


def test_the_default_is_the_promoted_model_for_everyone() -> None:
    check(DEFAULT_EXPERIMENT)
    assert DEFAULT_EXPERIMENT.champion == Variant(CHAMPION, PROMOTED, 100)
    assert DEFAULT_EXPERIMENT.shadows == ()


def test_a_good_split_with_a_shadow_passes_and_promoted_and_baseline_are_always_known() -> None:
    check(SPLIT, known_models=["v1", "v2", "v3"])
    check(Experiment((Variant("champion", PROMOTED, 50), Variant("x", BASELINE, 50))), [])


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        (Experiment(()), "at least one variant (the champion) is needed"),
        (
            Experiment((Variant("champion", PROMOTED, 98), Variant("champion", "v1", 2))),
            "variant name 'champion' is used twice",
        ),
        (
            Experiment((Variant("champion", PROMOTED, 100),), (Variant("champion", "v1"),)),
            "variant name 'champion' is used twice",
        ),
        (Experiment((Variant("Champion", PROMOTED, 100),)), "variant name 'Champion' must be"),
        (Experiment((Variant("9lives", PROMOTED, 100),)), "starting with a letter"),
        (Experiment((Variant("x" * 33, PROMOTED, 100),)), "must be 1-32 characters"),
        (
            Experiment((Variant("champion", PROMOTED, 98), Variant("challenger", "v1", 1))),
            "the variants' weights must sum to 100, not 99 (champion 98, challenger 1)",
        ),
        (
            Experiment((Variant("champion", PROMOTED, 101), Variant("challenger", "v1", -1))),
            "weights must be percents from 0 to 100, not [101, -1]",
        ),
        (
            Experiment((Variant("champion", PROMOTED, 100),), (Variant("shadow", "v1", 5),)),
            "shadow 'shadow' cannot have traffic",
        ),
    ],
)
def test_check_says_what_is_wrong(experiment: Experiment, message: str) -> None:
    with pytest.raises(ExperimentError) as raised:
        check(experiment)
    assert message in str(raised.value)


def test_check_names_every_unknown_model_and_every_problem_at_once() -> None:
    bad = Experiment(
        (Variant("champion", "v9", 97), Variant("challenger", "v8", 2)), (Variant("s", "v7"),)
    )
    with pytest.raises(ExperimentError) as raised:
        check(bad, known_models=["v1"])
    message = str(raised.value)
    assert "must sum to 100, not 99" in message
    for variant, model in (("champion", "v9"), ("challenger", "v8"), ("s", "v7")):
        assert f"variant {variant!r}: unknown model {model!r}" in message
    assert message.count("; ") == 3  # one line, four problems


def test_models_are_not_checked_without_a_list_of_known_ones() -> None:
    check(Experiment((Variant("champion", "anything", 100),)))


def test_a_ramp_takes_the_difference_from_the_champion_and_leaves_the_rest() -> None:
    ramped = with_share(SPLIT, "a", 10)
    assert weights(ramped) == {"champion": 86, "a": 10, "b": 4}
    assert [v.name for v in ramped.variants] == ["champion", "a", "b"]
    assert ramped.shadows == SPLIT.shadows
    check(ramped)
    assert weights(with_share(ramped, "a", 1)) == {"champion": 95, "a": 1, "b": 4}


def test_a_kill_is_a_ramp_to_zero_and_the_killed_variant_stays_defined() -> None:
    killed = with_share(SPLIT, "b", 0)
    assert weights(killed) == {"champion": 94, "a": 6, "b": 0}
    assert killed.variant("b") == Variant("b", "v2", 0)
    assert weights(with_share(killed, "b", 3)) == {"champion": 91, "a": 6, "b": 3}


def test_a_challenger_may_take_everything_the_others_leave() -> None:
    assert weights(with_share(SPLIT, "a", 96)) == {"champion": 0, "a": 96, "b": 4}


@pytest.mark.parametrize(
    ("name", "percent", "message"),
    [
        ("a", 101, "a share is a percent from 0 to 100, not 101"),
        ("a", -1, "a share is a percent from 0 to 100, not -1"),
        ("champion", 50, "'champion' is the champion"),
        ("shadow", 5, "no routed variant 'shadow'"),
        ("nobody", 5, "no routed variant 'nobody'; the routed variants are"),
        ("a", 97, "'a' at 97% and the other challengers at 4% leave the champion"),
    ],
)
def test_with_share_refuses(name: str, percent: int, message: str) -> None:
    with pytest.raises(ExperimentError) as raised:
        with_share(SPLIT, name, percent)
    assert message in str(raised.value)


def test_variant_lookup_names_the_variants_when_it_fails() -> None:
    assert SPLIT.variant("shadow").model == "v3"
    assert SPLIT.models() == {PROMOTED, "v1", "v2", "v3"}
    with pytest.raises(ExperimentError, match=r"no variant 'x'; the variants are \["):
        SPLIT.variant("x")
