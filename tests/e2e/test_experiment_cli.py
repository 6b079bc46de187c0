"""`shopper experiment set|ramp|kill|show` end to end, in process, on a data folder with
one trained model version; a flag client on the same file sees each change."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from shopper.adapters.folder_model_store import FolderModelStore
from shopper.adapters.openfeature_flags import OpenFeatureFlagClient
from shopper.cli import app
from shopper.domain.experiment import BASELINE, PROMOTED, Experiment, Variant
from shopper.ports.flags import Assignment
from tests.model_factories import ranking_model

pytestmark = pytest.mark.usefixtures("one_thread")

VERSION = "20261130T061502Z-3f2a"
SHOPPERS = [f"user-{i}" for i in range(500)]


def cli(*args: object, env: dict[str, str] | None = None) -> Result:
    # The command line reads SHOPPER_* settings: a developer's own must not leak in.
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SHOPPER_")}
    return CliRunner().invoke(app, [str(a) for a in args], env={**unset, **(env or {})})


def ok(*args: object, env: dict[str, str] | None = None) -> Result:
    result = cli(*args, env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def refused(*args: object) -> str:
    """The one-line error of a command that must fail cleanly (exit 2, no traceback)."""
    result = cli(*args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return result.stderr


def shown(data_dir: Path) -> Any:
    return json.loads(ok("experiment", "show", "--json", "--data-dir", data_dir).stdout)


def split(data_dir: Path) -> dict[str, int]:
    return {v["name"]: v["weight"] for v in shown(data_dir)["variants"]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    FolderModelStore(folder).save(ranking_model(VERSION))
    return folder


@pytest.fixture
def data_dir(tmp_path: Path, model_dir: Path) -> Path:
    (tmp_path / "data").mkdir()
    os.symlink(model_dir, tmp_path / "data" / "models")
    return tmp_path / "data"


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        time.sleep(0.05)


def set_split(data_dir: Path, challenger: int = 2) -> Result:
    return ok(
        "experiment", "set", "--data-dir", data_dir,
        "--variant", f"champion={PROMOTED}:{100 - challenger}",
        "--variant", f"challenger={VERSION}:{challenger}",
        "--shadow", f"shadow={BASELINE}",
    )  # fmt: skip


def test_show_without_a_flag_file_is_the_default_experiment(data_dir: Path) -> None:
    result = ok("experiment", "show", "--data-dir", data_dir)
    assert "no file yet: the default" in result.stdout
    assert "champion  promoted  100%  champion" in result.stdout
    report = shown(data_dir)
    assert report["variants"] == [{"name": "champion", "model": PROMOTED, "weight": 100}]
    assert report["shadows"] == [] and report["changes"] == []
    assert report["flags_file"] == str(data_dir / "flags.json")


def test_set_writes_the_flag_file_and_a_running_client_serves_it(data_dir: Path) -> None:
    client = OpenFeatureFlagClient(data_dir / "flags.json")
    try:
        assert {client.assign(s).variant for s in SHOPPERS} == {"champion"}
        result = set_split(data_dir, challenger=50)
        assert "shadow: scored, never served" in result.stdout
        assert client.experiment() == Experiment(
            (Variant("champion", PROMOTED, 50), Variant("challenger", VERSION, 50)),
            (Variant("shadow", BASELINE),),
        )
        wait_for(lambda: Assignment("challenger", VERSION) in {client.assign(s) for s in SHOPPERS})
    finally:
        client.close()
    flagd = json.loads((data_dir / "flags.json").read_text())
    assert flagd["flags"]["shopper-variant"]["targeting"] == {
        "fractional": [["champion", 50], ["challenger", 50]]
    }


def test_ramp_moves_shoppers_between_champion_and_challenger(data_dir: Path) -> None:
    set_split(data_dir)
    ok("experiment", "ramp", "challenger", "10", "--data-dir", data_dir, "--reason", "looks good")
    assert split(data_dir) == {"champion": 90, "challenger": 10}
    change = shown(data_dir)["changes"][-1]
    assert (change["action"], change["variant"], change["percent"]) == ("ramp", "challenger", 10)
    assert change["reason"] == "looks good"


def test_kill_routes_nobody_to_the_variant_and_logs_who_and_why(data_dir: Path) -> None:
    set_split(data_dir, challenger=20)
    ok(
        "experiment", "kill", "challenger", "--data-dir", data_dir,
        "--reason", "conversion fell 30%", "--by", "alice",
    )  # fmt: skip
    assert split(data_dir) == {"champion": 100, "challenger": 0}
    log = (data_dir / "flags.json.log.jsonl").read_text().splitlines()
    last = json.loads(log[-1])
    assert {k: last[k] for k in ("action", "variant", "reason", "by")} == {
        "action": "kill",
        "variant": "challenger",
        "reason": "conversion fell 30%",
        "by": "alice",
    }
    assert "at" in last
    text = ok("experiment", "show", "--data-dir", data_dir).stdout
    assert "kill challenger: conversion fell 30% (by alice)" in text
    assert "challenger  " in text and " 0%" in text  # still defined, with no traffic


def test_the_flags_option_the_environment_and_a_config_file_choose_the_file(
    data_dir: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "elsewhere" / "mine.json"
    ok("experiment", "set", "--flags", mine, "--data-dir", data_dir,
       "--variant", "champion=baseline:100")  # fmt: skip
    assert mine.exists() and not (data_dir / "flags.json").exists()
    env = {"SHOPPER_FLAGS_FILE": str(mine), "SHOPPER_DATA_DIR": str(data_dir)}
    report = json.loads(ok("experiment", "show", "--json", env=env).stdout)
    assert report["variants"] == [{"name": "champion", "model": BASELINE, "weight": 100}]
    toml = tmp_path / "shopper.toml"
    toml.write_text(f'flags_file = "{mine}"\n')
    report = json.loads(ok("experiment", "show", "--json", "--config", toml).stdout)
    assert report["flags_file"] == str(mine)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--variant", "champion=promoted:98", "--variant", "challenger=promoted:1"],
            "weights must sum to 100, not 99",
        ),
        (
            ["--variant", "champion=promoted:98", "--variant", "challenger=v9:2"],
            f"variant 'challenger': unknown model 'v9'; the known models: promoted, baseline, "
            f"{VERSION}",
        ),
        (
            ["--variant", "champion=promoted:100", "--shadow", "shadow=nope"],
            "variant 'shadow': unknown model 'nope'",
        ),
        (
            ["--variant", "champion=promoted:50", "--variant", "champion=baseline:50"],
            "variant name 'champion' is used twice",
        ),
        (["--variant", "Champion=promoted:100"], "variant name 'Champion' must be"),
    ],
)
def test_set_refuses_a_definition_that_cannot_be_served(
    data_dir: Path, args: list[str], message: str
) -> None:
    set_split(data_dir)
    before = (data_dir / "flags.json").read_bytes()
    error = refused("experiment", "set", "--data-dir", data_dir, *args)
    assert message in error
    assert len(error.strip().splitlines()) == 1
    assert (data_dir / "flags.json").read_bytes() == before


@pytest.mark.parametrize(
    "spec", ["champion", "champion=promoted", "champion=promoted:lots", "=promoted:100"]
)
def test_set_refuses_a_variant_that_is_not_name_model_percent(data_dir: Path, spec: str) -> None:
    error = refused("experiment", "set", "--data-dir", data_dir, "--variant", spec)
    words = " ".join(error.replace("│", " ").split())  # typer's usage box wraps lines
    assert "NAME=MODEL:PERCENT" in words or "PERCENT must be a whole number 0-100" in words


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ramp", "champion", "50"], "'champion' is the champion"),
        (["ramp", "nobody", "5"], "no routed variant 'nobody'"),
        (["ramp", "challenger", "120"], "a share is a percent from 0 to 100, not 120"),
        (["ramp", "shadow", "5"], "no routed variant 'shadow'"),
        (["kill", "champion"], "'champion' is the champion"),
    ],
)
def test_ramp_and_kill_refuse_what_cannot_be_done(
    data_dir: Path, args: list[str], message: str
) -> None:
    set_split(data_dir)
    assert message in refused("experiment", *args, "--data-dir", data_dir)
    assert split(data_dir) == {"champion": 98, "challenger": 2}


def test_a_garbage_flag_file_is_a_clear_error_not_a_traceback(data_dir: Path) -> None:
    (data_dir / "flags.json").write_text("{not json")
    assert "is not JSON" in refused("experiment", "show", "--data-dir", data_dir)
    assert "is not JSON" in refused("experiment", "kill", "challenger", "--data-dir", data_dir)
