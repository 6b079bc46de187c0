"""Which lists the ranking stage makes for a micro-batch: each shopper's assigned variant's,
and every shadow variant's, each with the model the variant is bound to.

The assignment is the flag client's (`ports.flags.FlagClient.assign`), the one the API
reads lists by, so a shopper's list is written under the variant they are served. Shadow
lists are written and logged under the shadow's name, which no shopper is ever assigned:
the API never reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from shopper.domain.experiment import BASELINE, PROMOTED
from shopper.domain.model import RankingModel
from shopper.domain.recommendation import DEFAULT_VARIANT
from shopper.domain.session import SessionState
from shopper.ports.flags import FlagClient
from shopper.ports.model_store import ModelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    variant: str
    model: str  # a model version, `promoted` or `baseline`
    shadow: bool
    sessions: Sequence[SessionState]


def routes(flags: FlagClient | None, sessions: Sequence[SessionState]) -> list[Route]:
    """The batch's shoppers by assigned variant (in the experiment's order), then every
    shadow with all of them. Without flags, everyone is the champion on `promoted`."""
    if flags is None:
        return [Route(DEFAULT_VARIANT, PROMOTED, False, sessions)]
    experiment = flags.experiment()
    groups: dict[str, list[SessionState]] = {v.name: [] for v in experiment.variants}
    models = {v.name: v.model for v in experiment.variants}
    for session in sessions:
        assigned = flags.assign(session.subject)
        groups.setdefault(assigned.variant, []).append(session)
        models.setdefault(assigned.variant, assigned.model)
    out = [Route(name, models[name], False, group) for name, group in groups.items() if group]
    out += [Route(s.name, s.model, True, sessions) for s in experiment.shadows if sessions]
    return out


class ModelPool:
    """The models variants are bound to, other than `promoted` (the stage's own, polled)
    and `baseline` (no model): each version loaded once, as versions never change."""

    def __init__(self, store: ModelStore | None) -> None:
        self._store = store
        self._loaded: dict[str, RankingModel | None] = {}

    def get(self, ref: str, promoted: RankingModel | None) -> tuple[RankingModel | None, bool]:
        """(model, usable): `promoted` for `promoted`, None for `baseline`; a version
        that cannot be loaded is not usable (its variant gets no lists: the API then
        serves the champion's list in its place)."""
        if ref == PROMOTED:
            return promoted, True
        if ref == BASELINE:
            return None, True
        if ref not in self._loaded:
            try:
                if self._store is None:
                    raise LookupError("no model store is configured")
                self._loaded[ref] = self._store.load(ref)
            except Exception:
                log.exception("cannot load model %s for its variant; its shoppers get the "
                              "champion's lists", ref)  # fmt: skip
                self._loaded[ref] = None
        model = self._loaded[ref]
        return model, model is not None
