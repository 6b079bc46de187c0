"""The experiment as a flagd flag file: the one format a flagd daemon and the in-process
provider both read, so moving from one to the other is a configuration change.

Two flags:

- `shopper-variant`, a string flag: `variants` maps each routed variant's name to its model,
  `defaultVariant` is the champion, and `targeting` is
  `{"fractional": [["champion", 98], ["challenger", 2]]}`, the shorthand that buckets by
  `$flagd.flagKey` + `targetingKey` (the shopper): sticky, the same in every process. The
  champion comes first; a killed variant stays with weight 0.
- `shopper-shadows`, an object flag with one static variant whose value maps each shadow's
  name to its model; absent when there are none.

Weights are whole percents summing to 100 (`domain.experiment.check`), so a file flagd
would serve with other totals is refused here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from shopper.domain.experiment import (
    DEFAULT_EXPERIMENT,
    Experiment,
    ExperimentError,
    Variant,
    check,
)
from shopper.ports.flags import Assignment

SCHEMA = "https://flagd.dev/schema/v0/flags.json"
VARIANT_FLAG = "shopper-variant"
SHADOWS_FLAG = "shopper-shadows"
SHADOWS_VARIANT = "shadows"  # the shadows flag's one variant


def to_flagd(experiment: Experiment) -> dict[str, Any]:
    """The flag file's JSON object for `experiment` (not checked: see `write_flag_file`)."""
    flags: dict[str, Any] = {
        VARIANT_FLAG: {
            "state": "ENABLED",
            "variants": {v.name: v.model for v in experiment.variants},
            "defaultVariant": experiment.champion.name,
            "targeting": {"fractional": [[v.name, v.weight] for v in experiment.variants]},
        }
    }
    if experiment.shadows:
        flags[SHADOWS_FLAG] = {
            "state": "ENABLED",
            "variants": {SHADOWS_VARIANT: {s.name: s.model for s in experiment.shadows}},
            "defaultVariant": SHADOWS_VARIANT,
        }
    return {"$schema": SCHEMA, "flags": flags}


def from_flagd(data: object) -> Experiment:
    """The experiment a flag file's JSON object defines. Anything else (another shape, a
    bucketing rule of its own, weights that are not percents summing to 100) raises
    `ExperimentError` saying what is wrong."""
    flags = _object(_object(data, "the flag file").get("flags"), '"flags"')
    variant_flag = _object(flags.get(VARIANT_FLAG), f'flag "{VARIANT_FLAG}"')
    experiment = Experiment(_routed(variant_flag), _shadows(flags.get(SHADOWS_FLAG)))
    check(experiment)
    return experiment


def parse_flag_text(text: str, source: str) -> Experiment:
    """`from_flagd` of a file's text; errors name `source`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExperimentError(f"{source} is not JSON: {exc}") from None
    try:
        return from_flagd(data)
    except ExperimentError as exc:
        raise ExperimentError(f"{source} is not a shopper flag definition: {exc}") from None


def read_flag_file(path: Path) -> Experiment:
    """The experiment in the flag file at `path`; `DEFAULT_EXPERIMENT` when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return DEFAULT_EXPERIMENT
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentError(f"cannot read the flag file {path}: {exc}") from None
    return parse_flag_text(text, f"the flag file {path}")


def write_flag_file(
    path: Path, experiment: Experiment, known_models: Collection[str] | None = None
) -> None:
    """Check `experiment` (`domain.experiment.check`) and replace the flag file with it in
    one step: readers see the old file or the new one, never half of one."""
    check(experiment, known_models)
    text = json.dumps(to_flagd(experiment), indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        _newer_than(Path(tmp), path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def assignment_of(variant: object, model: object, champion: Variant) -> Assignment:
    """A flag evaluation's answer as an `Assignment`; the champion when it has none."""
    if isinstance(variant, str) and variant and isinstance(model, str):
        return Assignment(variant, model)
    return Assignment(champion.name, champion.model)


def _newer_than(new: Path, old: Path) -> None:
    # flagd's file watcher reloads only on a later mtime; two writes within one tick of the
    # file system clock would otherwise leave the second one unseen.
    try:
        before = old.stat().st_mtime_ns
    except FileNotFoundError:
        return
    if new.stat().st_mtime_ns <= before:
        later = before + 1_000_000
        os.utime(new, ns=(later, later))


def _routed(flag: Mapping[str, Any]) -> tuple[Variant, ...]:
    _enabled(flag, VARIANT_FLAG)
    models = _object(flag.get("variants"), f'"{VARIANT_FLAG}" variants')
    for name, model in models.items():
        if not isinstance(model, str):
            raise ExperimentError(f'variant "{name}" must name a model (a string), not {model!r}')
    champion = flag.get("defaultVariant")
    if not isinstance(champion, str) or champion not in models:
        raise ExperimentError(
            f'"defaultVariant" must name the champion, one of {sorted(models)}, not {champion!r}'
        )
    weights = _fractions(flag.get("targeting"), champion, models)
    order = [champion, *[n for n in weights if n != champion]]
    order += [n for n in models if n not in weights]  # not in the split: no traffic
    return tuple(Variant(n, models[n], weights.get(n, 0)) for n in order)


def _fractions(targeting: object, champion: str, models: Mapping[str, Any]) -> dict[str, int]:
    if targeting in (None, {}):
        return {champion: 100}  # no targeting: flagd serves everyone the default variant
    rule = _object(targeting, '"targeting"')
    buckets = rule.get("fractional")
    if set(rule) != {"fractional"} or not isinstance(buckets, list) or not buckets:
        raise ExperimentError(
            '"targeting" must be {"fractional": [["<variant>", <percent>], ...]}, '
            f"not {json.dumps(targeting)}"
        )
    weights: dict[str, int] = {}
    for bucket in buckets:
        if not (
            isinstance(bucket, list)
            and len(bucket) == 2
            and isinstance(bucket[0], str)
            and isinstance(bucket[1], int)
            and not isinstance(bucket[1], bool)
        ):
            raise ExperimentError(
                'each "fractional" entry must be ["<variant>", <percent>] (the shorthand '
                f"that buckets by flag key and shopper), not {json.dumps(bucket)}"
            )
        name, weight = bucket
        if name not in models:
            raise ExperimentError(f'"fractional" names {name!r}, which is not a variant')
        if name in weights:
            raise ExperimentError(f'"fractional" names {name!r} twice')
        weights[name] = weight
    return weights


def _shadows(flag: object) -> tuple[Variant, ...]:
    if flag is None:
        return ()
    flag = _object(flag, f'flag "{SHADOWS_FLAG}"')
    _enabled(flag, SHADOWS_FLAG)
    variants = _object(flag.get("variants"), f'"{SHADOWS_FLAG}" variants')
    default = flag.get("defaultVariant")
    if not isinstance(default, str) or set(variants) != {default} or flag.get("targeting"):
        raise ExperimentError(f'"{SHADOWS_FLAG}" must have one static variant, its default')
    shadows = _object(variants[default], f'"{SHADOWS_FLAG}" value')
    for name, model in shadows.items():
        if not isinstance(model, str):
            raise ExperimentError(f'shadow "{name}" must name a model (a string), not {model!r}')
    return tuple(Variant(name, model, 0) for name, model in shadows.items())


def _enabled(flag: Mapping[str, Any], key: str) -> None:
    if flag.get("state") != "ENABLED":
        raise ExperimentError(f'flag "{key}" must have "state": "ENABLED"')


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")
        missing = "is missing" if value is None else f"must be a JSON object, not {kind}"
        raise ExperimentError(f"{what} {missing}")
    return value
