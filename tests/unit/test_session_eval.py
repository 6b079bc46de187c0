"""The session protocol: how test visits are cut into what is revealed and what to predict."""

from __future__ import annotations

import pandas as pd
import pytest

from shopper.training.data import EVENT_COLUMNS, Interactions
from shopper.training.moments import LINE_S, basket_cases, next_item_cases
from shopper.training.session_eval import NO_SESSION, SESSION, evaluate_sessions
from tests.model_factories import DAY, PHONES, SHOES, T0, two_taste_catalog

pytestmark = pytest.mark.usefixtures("one_thread")


def rows(*events: tuple[str, str, str, float, str]) -> pd.DataFrame:
    """(subject, session, item, ts, type) rows as the data set readers give them."""
    frame = pd.DataFrame(
        [
            (s, item, ts, kind, {"view": 1.0, "add_to_cart": 3.0}.get(kind, 5.0),
             kind == "purchase", None, None, None)
            for s, _, item, ts, kind in events
        ],
        columns=EVENT_COLUMNS,
    )  # fmt: skip
    return frame.assign(session=[e[1] for e in events])


def test_a_basket_reveals_its_first_half_and_asks_for_the_rest() -> None:
    window = rows(
        ("u:1", "inv-1", "a", T0, "purchase"),
        ("u:1", "inv-1", "b", T0, "purchase"),
        ("u:1", "inv-1", "c", T0, "purchase"),
        ("u:1", "inv-1", "d", T0, "purchase"),
        ("u:1", "inv-1", "e", T0, "purchase"),
        ("u:2", "inv-2", "a", T0, "purchase"),  # one line: nothing to complete
        ("u:1", "inv-3", "f", T0 + DAY, "purchase"),
        ("u:1", "inv-3", "g", T0 + DAY, "purchase"),
    )
    cases = list(basket_cases(window))
    assert [(c.subject, [i.item_id for i in c.revealed], sorted(c.relevant)) for c in cases] == [
        ("u:1", ["a", "b"], ["c", "d", "e"]),
        ("u:1", ["f"], ["g"]),
    ]
    # Features are taken after the last revealed line: lines are LINE_S apart.
    assert [c.at for c in cases] == [T0 + LINE_S, T0 + DAY]
    assert cases[0].later == cases[0].relevant
    # The shopper's earlier invoice in the window is what they did before this visit.
    assert [i.item_id for i in cases[1].earlier] == ["a", "b", "c", "d", "e"]
    assert cases[0].earlier == ()


def test_next_item_asks_for_each_new_viewed_or_carted_item() -> None:
    window = rows(
        ("u:1", "s-1", "a", T0, "view"),
        ("u:1", "s-1", "b", T0 + 1, "view"),
        ("u:1", "s-1", "a", T0 + 2, "view"),  # seen in this visit: not a target
        ("u:1", "s-1", "b", T0 + 3, "purchase"),  # not a view or cart
        ("u:1", "s-1", "c", T0 + 4, "add_to_cart"),
    )
    cases = list(next_item_cases(window))
    assert [([i.item_id for i in c.revealed], set(c.relevant)) for c in cases] == [
        (["a"], {"b"}),
        (["a", "b", "a", "b"], {"c"}),
    ]
    assert [c.ts for c in cases] == [T0 + 1, T0 + 4]
    # What the shopper went on to touch in the visit labels the ranker's training rows;
    # features are taken just before the next event, never at it.
    assert [set(c.later) for c in cases] == [{"b", "c"}, {"c"}]
    assert all(c.ts - 1e-3 < c.at < c.ts for c in cases)


def test_what_the_visit_shows_makes_the_list_better_on_a_shop_of_two_tastes() -> None:
    """Shoppers keep to one taste per visit; newcomers in the test window show theirs only
    in the visit, so ranking with it beats ranking without it."""
    visits = []
    for n in range(200):
        items = SHOES if n % 2 else PHONES
        day = T0 + (n % 30) * DAY
        for step, item in enumerate(items[n % 3 : n % 3 + 3]):
            visits.append((f"u:{n}", f"v-{n}", item, day + step * 60, "view"))
    for n in range(40):
        items = SHOES if n % 2 else PHONES
        day = T0 + (31 + n % 5) * DAY
        for step, item in enumerate(items[n % 3 : n % 3 + 3]):
            visits.append((f"u:new-{n}", f"w-{n}", item, day + step * 60, "view"))
    data = Interactions(rows(*visits), two_taste_catalog())

    report = evaluate_sessions(data, test_days=6, k=2)

    assert report["task"] == "next item"
    assert report["cases"] == 80  # two next items in each newcomer's visit
    overall = {name: report["models"][name]["overall"] for name in (NO_SESSION, SESSION)}
    for metrics in overall.values():
        assert {"recall", "recall_se", "ndcg", "ndcg_se", "mrr", "coverage"} <= set(metrics)
    assert overall[SESSION]["recall"] > overall[NO_SESSION]["recall"] + 2 * max(
        overall[SESSION]["recall_se"], overall[NO_SESSION]["recall_se"]
    )
