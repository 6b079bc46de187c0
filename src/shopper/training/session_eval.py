"""Session-aware evaluation (`shopper evaluate --protocol session`): does what a shopper does
in this visit make the list better? docs/evaluation.md.

The models are trained (and tuned) on everything before the test window. Each test visit
is cut: what the shopper did before the cut is revealed, what comes after is to predict.

- Basket completion (a data set whose visits are purchases, e.g. UCI: an invoice is a
  visit): for every invoice of two lines or more in the test window, the first half of its
  lines in file order are revealed, the rest are relevant.
- Next item (visits of views and carts, e.g. REES46): at every step of a test session, the
  events so far are revealed; the next viewed or carted item, if new to the session, is
  relevant.

The same candidates are ranked, by `domain.recommender.recommend` as served, for the shopper
as they were before the visit (`no-session`: their trained history and their earlier visits
in the test window) and with the revealed part of the visit as live events (`session`).
Revealed items are never recommended back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from shopper.domain.model import RankingModel, Repurchase
from shopper.domain.recommender import LiveInteraction, Profile, build_profile, recommend
from shopper.domain.tier import DEFAULT_THRESHOLDS, Tier, TierThresholds
from shopper.errors import ShopperError
from shopper.training.data import Interactions
from shopper.training.evaluation import Scores, time_split
from shopper.training.fit import Progress
from shopper.training.tuning import validation_days

NO_SESSION = "no-session"
SESSION = "session"


@dataclass(frozen=True)
class Case:
    """One prediction: who, when, what they did before this visit in the test window,
    what of the visit is revealed, and what is relevant."""

    subject: str
    ts: float
    earlier: tuple[LiveInteraction, ...]
    revealed: tuple[LiveInteraction, ...]
    relevant: frozenset[str]


def evaluate_sessions(
    data: Interactions,
    test_days: float = 30.0,
    k: int = 20,
    repurchase: Repurchase = Repurchase.EXCLUDE,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Both rankings over every test case of the data's kind (basket or next item)."""
    from shopper.training.pipeline import train

    if "session" not in data.events.columns:
        raise ShopperError(
            "the session protocol needs visits: a data set folder (--dataset), whose events "
            "carry their invoice or session"
        )
    days = min(test_days, validation_days(data, test_days))
    train_part, window, _ = time_split(data, days)
    model = train(train_part, repurchase, thresholds, validation_days=days, k=k,
                  progress=progress)  # fmt: skip
    basket = bool(window.purchase.all())
    cases = list(basket_cases(window) if basket else next_item_cases(window))
    if progress:
        progress("evaluate")
    results = {name: _tiers() for name in (NO_SESSION, SESSION)}
    for case in cases:
        for name, revealed in ((NO_SESSION, ()), (SESSION, case.revealed)):
            profile = _profile(model, case, revealed)
            ranked = recommend(model, profile, k, case.ts)
            ids = [s.item_id for s in ranked.items]
            results[name]["overall"].add(ids, case.relevant, k)
            results[name][ranked.tier.value].add(ids, case.relevant, k)
    n = model.n_items
    return {
        "k": k,
        "protocol": "session",
        "task": "basket completion" if basket else "next item",
        "repurchase": repurchase.value,
        "test_days": round(days, 4),
        "cases": len(cases),
        "models": {
            name: {
                "overall": tiers["overall"].summary(n),
                "tiers": {t.value: tiers[t.value].summary(n) for t in Tier},
            }
            for name, tiers in results.items()
        },
        "blends": {t.value: dict(b.weights) for t, b in model.blends.items()},
    }


def _tiers() -> dict[str, Scores]:
    return {"overall": Scores()} | {t.value: Scores() for t in Tier}


def _profile(model: RankingModel, case: Case, revealed: tuple[LiveInteraction, ...]) -> Profile:
    live = [*case.earlier, *revealed]
    return build_profile(
        model,
        case.subject,
        case.ts,
        live=live,
        live_count=len(live),
        # What the visit showed is never recommended back, with or without its context.
        viewed=[i.item_id for i in case.revealed],
    )


def basket_cases(window: pd.DataFrame) -> Iterator[Case]:
    """Each invoice of two lines or more: its first half revealed, the rest relevant."""
    earlier: dict[str, list[LiveInteraction]] = {}
    for (subject, _), lines in window.groupby(["subject", "session"], sort=False):
        items = list(dict.fromkeys(lines.item_id))  # distinct, in file order
        ts = float(lines.ts.iloc[0])
        before = tuple(earlier.get(str(subject), ()))
        visit = [LiveInteraction(i, 5.0, ts, purchase=True) for i in items]
        earlier.setdefault(str(subject), []).extend(visit)
        half = len(items) // 2
        if half == 0:
            continue
        yield Case(str(subject), ts, before, tuple(visit[:half]), frozenset(items[half:]))


def next_item_cases(window: pd.DataFrame) -> Iterator[Case]:
    """Each step of each session: the next viewed or carted item, if new to the session."""
    earlier: dict[str, list[LiveInteraction]] = {}
    for (subject, _), events in window.sort_values("ts", kind="stable").groupby(
        ["subject", "session"], sort=False
    ):
        rows = list(events.itertuples(index=False))
        before = tuple(earlier.get(str(subject), ()))
        visit = [
            LiveInteraction(r.item_id, float(r.weight), float(r.ts), purchase=bool(r.purchase))
            for r in rows
        ]
        for t in range(1, len(rows)):
            target = rows[t]
            seen = {i.item_id for i in visit[:t]}
            if target.type not in ("view", "add_to_cart") or target.item_id in seen:
                continue
            yield Case(
                str(subject), float(target.ts), before, tuple(visit[:t]),
                frozenset({target.item_id}),
            )  # fmt: skip
        earlier.setdefault(str(subject), []).extend(visit)
