"""The experiment guardrail on the real flag file: a challenger whose shoppers convert less
is killed by a change of the flag (and its shoppers go to the champion within 5 s, no
restart); one whose shoppers convert more is kept, and the report shows it significant."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopper.adapters.flag_file import FlagFile
from shopper.adapters.flagd_format import write_flag_file
from shopper.adapters.openfeature_flags import OpenFeatureFlagClient
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.experiment import BASELINE, PROMOTED, Experiment, Variant
from shopper.domain.guardrail import GuardrailRule
from shopper.services.guardrail import Guardrail
from tests.unit.factories import drain, publish, wire

SESSIONS = 1_200  # about 600 a variant: past the rule's 200, enough to see 30% vs 15%
RULE = GuardrailRule("conversion_rate", min_sessions=200, alpha=0.01)


@pytest.fixture
def flags_path(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    split = (Variant("champion", PROMOTED, 50), Variant("challenger", BASELINE, 50))
    write_flag_file(path, Experiment(split))
    return path


@pytest.fixture
def system(flags_path: Path, tmp_path: Path) -> Iterator[System]:
    config = load_config(
        {}, data_dir=tmp_path, flags_file=flags_path, microbatch_wait_s=0, popular_refresh_s=0
    )
    flags = OpenFeatureFlagClient(flags_path)
    built = build_system(config, clock=ManualClock(), flags=flags)
    yield built
    built.close()


def shop(system: System, conversion: dict[str, float], seed: int = 5) -> None:
    """`SESSIONS` visits, each shown a list (an impression stamped with the visitor's
    variant) and buying with the variant's chance."""
    assert system.flags is not None
    rng = random.Random(seed)
    events = []
    for n in range(SESSIONS):
        visit = f"visit-{n}"
        variant = system.flags.assign(f"s:{visit}").variant
        events.append(wire(f"i{n}", "impression", session_id=visit, variant=variant,
                           list_id=f"l{n}"))  # fmt: skip
        if rng.random() < conversion[variant]:
            events.append(wire(f"p{n}", "purchase", session_id=visit, item_id="sku-1",
                               price=20.0, quantity=1))  # fmt: skip
    publish(system.event_log, system.config.topic_prefix, *events)
    processor = system.processor()
    drain(system, processor)
    processor.close()


def guardrail(system: System, flags_path: Path) -> Guardrail:
    return Guardrail(FlagFile(flags_path), lambda: system.experiment_report(0.0), RULE)


def test_a_challenger_that_converts_less_is_killed_by_a_flag_change(
    system: System, flags_path: Path
) -> None:
    shop(system, {"champion": 0.30, "challenger": 0.15})

    killed = guardrail(system, flags_path).check()

    assert list(killed) == ["challenger"]
    assert "conversion_rate" in killed["challenger"]
    definition = FlagFile(flags_path).read()
    assert [(v.name, v.weight) for v in definition.variants] == [
        ("champion", 100),
        ("challenger", 0),
    ]
    (change,) = FlagFile(flags_path).changes(5)
    assert change["action"] == "kill" and change["by"] == "guardrail"
    assert system.experiment_report(0.0)["changes"][-1]["reason"] == killed["challenger"]
    # The running flag client follows the file: no shopper is routed to it any more.
    assert system.flags is not None
    deadline = time.monotonic() + 5
    while any(system.flags.assign(f"s:visit-{n}").variant != "champion" for n in range(200)):
        assert time.monotonic() < deadline, "the kill was not picked up within 5 s"
        time.sleep(0.1)
    assert guardrail(system, flags_path).check() == {}  # killed once


def test_a_challenger_that_converts_more_is_kept_and_reported_significant(
    system: System, flags_path: Path
) -> None:
    shop(system, {"champion": 0.15, "challenger": 0.30})

    assert guardrail(system, flags_path).check() == {}

    report = {v["name"]: v for v in system.experiment_report(0.0)["variants"]}
    versus = report["challenger"]["vs_champion"]["conversion_rate"]
    assert versus["significant"] and versus["difference"] > 0.1
    assert report["challenger"]["sessions"] + report["champion"]["sessions"] == SESSIONS
    assert report["challenger"]["revenue_per_session"]["value"] > 4.0  # 20 x ~0.3
    assert FlagFile(flags_path).read().variant("challenger").weight == 50
