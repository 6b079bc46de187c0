"""Experiments: which model each shopper is served, as a split of shoppers into variants.

A variant is a name bound to a model (a model store version, `promoted` for whichever
version is promoted, or `baseline` for the live co-occurrence ranker that needs no
training) and a share of shoppers in percent. The first variant is the champion: it takes
the share of a variant that is killed, and its list stands in for a variant's that is
missing. Shadow variants are scored for every shopper and logged, never served.

Which variant a shopper gets is the flag evaluation's (`ports.flags.FlagClient.assign`):
a hash of the shopper id, so it is sticky across requests, replicas and restarts. Here
are only the definitions and the edits the CLI and the guardrail make to them.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, replace

from shopper.errors import ShopperError

BASELINE = "baseline"  # the built-in live co-occurrence ranker: needs no trained model
PROMOTED = "promoted"  # the model store's promoted version, whichever it is
CHAMPION = "champion"  # the champion's name when nothing else is configured
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class ExperimentError(ShopperError):
    """An experiment definition that cannot be served (the message lists why)."""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    model: str  # a model version, `promoted` or `baseline`
    weight: int = 0  # percent of shoppers routed here (0: killed, and every shadow)


@dataclass(frozen=True, slots=True)
class Experiment:
    variants: tuple[Variant, ...]  # routed; the first is the champion
    shadows: tuple[Variant, ...] = ()

    @property
    def champion(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for v in (*self.variants, *self.shadows):
            if v.name == name:
                return v
        raise ExperimentError(f"no variant {name!r}; the variants are {self.names()}")

    def names(self) -> list[str]:
        return [v.name for v in (*self.variants, *self.shadows)]

    def models(self) -> set[str]:
        """Every model the experiment serves or shadows."""
        return {v.model for v in (*self.variants, *self.shadows)}


DEFAULT_EXPERIMENT = Experiment((Variant(CHAMPION, PROMOTED, 100),))


def check(experiment: Experiment, known_models: Collection[str] | None = None) -> None:
    """Raise `ExperimentError` naming every problem: no variant, a bad or repeated name,
    routed weights that are not whole percents summing to 100, a shadow with traffic, a
    model the store does not know (when `known_models` is given; `promoted` and
    `baseline` are always known)."""
    problems = []
    if not experiment.variants:
        problems.append("at least one variant (the champion) is needed")
    names = experiment.names()
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"variant name {name!r} is used twice")
    for name in names:
        if not NAME.match(name):
            problems.append(
                f"variant name {name!r} must be 1-32 characters of a-z, 0-9, '-' or '_', "
                "starting with a letter"
            )
    weights = [v.weight for v in experiment.variants]
    if any(w < 0 or w > 100 for w in weights):
        problems.append(f"weights must be percents from 0 to 100, not {weights}")
    elif experiment.variants and sum(weights) != 100:
        shares = ", ".join(f"{v.name} {v.weight}" for v in experiment.variants)
        problems.append(f"the variants' weights must sum to 100, not {sum(weights)} ({shares})")
    problems += [f"shadow {s.name!r} cannot have traffic" for s in experiment.shadows if s.weight]
    if known_models is not None:
        known = {*known_models, PROMOTED, BASELINE}
        for v in (*experiment.variants, *experiment.shadows):
            if v.model not in known:
                problems.append(f"variant {v.name!r}: unknown model {v.model!r}")
    if problems:
        raise ExperimentError("; ".join(problems))


def with_share(experiment: Experiment, name: str, percent: int) -> Experiment:
    """`name` routed `percent` of shoppers, the champion taking up the difference (a ramp,
    or with 0 a kill). The champion itself is not ramped: ramp the others."""
    if not 0 <= percent <= 100:
        raise ExperimentError(f"a share is a percent from 0 to 100, not {percent}")
    champion = experiment.champion
    if name == champion.name:
        raise ExperimentError(
            f"{name!r} is the champion: it takes whatever the other variants do not"
        )
    if name not in [v.name for v in experiment.variants]:
        raise ExperimentError(
            f"no routed variant {name!r}; the routed variants are "
            f"{[v.name for v in experiment.variants]}"
        )
    others = sum(v.weight for v in experiment.variants[1:] if v.name != name)
    if others + percent > 100:
        raise ExperimentError(
            f"{name!r} at {percent}% and the other challengers at {others}% leave the "
            "champion less than nothing"
        )
    variants = tuple(
        replace(v, weight=percent) if v.name == name else v for v in experiment.variants[1:]
    )
    return replace(
        experiment, variants=(replace(champion, weight=100 - others - percent), *variants)
    )
