"""Shopper moments: a visit cut in two, what was revealed and what came next.

The session protocol (`session_eval`) measures rankings on the moments of its test window;
the learned ranker (`learned_ranker`) is fitted on the moments of the window before.

- Basket completion (visits of purchases, e.g. UCI: an invoice is a visit): every invoice
  of two distinct items or more is cut once, after the first half of its items in file
  order; the rest are relevant.
- Next item (visits of views and carts, e.g. REES46): a session is cut at every step; the
  next viewed or carted item, if new to the session, is relevant, and every item the visit
  touches later is what the shopper did next (the ranker's label).

A moment's features are the feature store's as of `at`: the last revealed line of a basket
(the lines of an invoice are spaced `LINE_S` apart in the feature events, in file order,
see `demo.datasets.dataset_events`), or just before the next event of a session. Nothing
of what is to be predicted is in them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from shopper.domain.model import RankingModel
from shopper.domain.recommender import LiveInteraction, Profile, build_profile

LINE_S = 0.001  # an invoice's lines, a millisecond apart, in file order
BEFORE_S = 1e-6  # "just before": the feature store's clock is microseconds


@dataclass(frozen=True)
class Case:
    """One moment: who, when, what they did before this visit in the window, what of the
    visit is revealed, what is relevant, what they touched later in the visit, and the
    time the features are taken at."""

    subject: str
    ts: float
    earlier: tuple[LiveInteraction, ...]
    revealed: tuple[LiveInteraction, ...]
    relevant: frozenset[str]
    later: frozenset[str]
    at: float


def moments(window: pd.DataFrame, starts: bool = False) -> Iterator[Case]:
    """The window's moments of its kind: baskets if every event is a purchase. With
    `starts`, each visit's start too: the shopper as they arrive, nothing of the visit
    revealed, everything it touched to come (what the ranker must also order well: a
    list written before the visit shows anything)."""
    if bool(window.purchase.all()):
        return basket_cases(window, starts)
    return next_item_cases(window, starts)


def basket_cases(window: pd.DataFrame, starts: bool = False) -> Iterator[Case]:
    """Each invoice of two distinct items or more: its first half revealed, the rest
    relevant."""
    earlier: dict[str, list[LiveInteraction]] = {}
    for (subject, _), lines in window.groupby(["subject", "session"], sort=False):
        items = list(dict.fromkeys(lines.item_id))  # distinct, in file order
        ts = float(lines.ts.iloc[0])
        before = tuple(earlier.get(str(subject), ()))
        visit = [LiveInteraction(i, 5.0, ts, purchase=True) for i in items]
        earlier.setdefault(str(subject), []).extend(visit)
        if starts:
            whole = frozenset(items)
            yield Case(str(subject), ts, before, (), whole, whole, ts - BEFORE_S)
        half = len(items) // 2
        if half == 0:
            continue
        rest = frozenset(items[half:])
        yield Case(
            str(subject), ts, before, tuple(visit[:half]), rest, rest, ts + (half - 1) * LINE_S
        )


def next_item_cases(window: pd.DataFrame, starts: bool = False) -> Iterator[Case]:
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
        if starts:
            whole = frozenset(i.item_id for i in visit)
            first = float(rows[0].ts)
            yield Case(str(subject), first, before, (), whole, whole, first - BEFORE_S)
        for t in range(1, len(rows)):
            target = rows[t]
            seen = {i.item_id for i in visit[:t]}
            if target.type not in ("view", "add_to_cart") or target.item_id in seen:
                continue
            later = frozenset(i.item_id for i in visit[t:]) - seen
            yield Case(
                str(subject), float(target.ts), before, tuple(visit[:t]),
                frozenset({target.item_id}), later, float(target.ts) - BEFORE_S,
            )  # fmt: skip
        earlier.setdefault(str(subject), []).extend(visit)


def case_profile(model: RankingModel, case: Case, revealed: tuple[LiveInteraction, ...]) -> Profile:
    """The shopper at the moment, as the served ranking sees them: their trained history,
    their earlier visits in the window, and `revealed` as live events. What the visit
    showed is never recommended back, with or without its context."""
    live = [*case.earlier, *revealed]
    return build_profile(
        model,
        case.subject,
        case.ts,
        live=live,
        live_count=len(live),
        viewed=[i.item_id for i in case.revealed],
    )
