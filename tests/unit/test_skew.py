"""The skew check's reading of mismatches: late events versus a definition that differs."""

from __future__ import annotations

from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.domain.features.spec import PRODUCT_STATS
from shopper.ports.feature_store import ServedRow
from shopper.services.skew import EventCounts, check_skew
from tests.contract.test_feature_store import stats
from tests.unit.factories import T0, domain, view

T = T0 + 100


def offline_store() -> InMemoryFeatureStore:
    """Training's view: the item had 2 views in the hour as of T."""
    store = InMemoryFeatureStore()
    store.replace_offline(PRODUCT_STATS.name, [stats("sku-1", T, views=2)])
    return store


def training_events() -> EventCounts:
    """The archive: two views of sku-1 up to T, one long before (outside the horizon)
    and one after T: neither of those two counts for a row as of T."""
    raws = [
        view("old", "bob", "sku-1", ts=T - 2 * 86_400),
        view("v1", "alice", "sku-1", ts=T - 60),
        view("v2", "bob", "sku-1", ts=T),
        view("after", "carol", "sku-1", ts=T + 5),
    ]
    return EventCounts(domain(r) for r in raws)


def test_a_row_computed_before_all_its_events_arrived_is_late_not_skew() -> None:
    served = ServedRow(stats("sku-1", T, views=1), events_seen=1)  # v2 was not in yet
    report = check_skew(offline_store(), [served], [], training_events())
    assert (report.mismatches, report.late, report.unexplained) == (1, 1, 0)
    assert report.by_feature["product_stats:views_1h"] == 1  # still counted and named


def test_a_row_computed_from_every_event_that_differs_is_skew() -> None:
    served = ServedRow(stats("sku-1", T, views=1), events_seen=2)
    report = check_skew(offline_store(), [served], [], training_events())
    assert (report.mismatches, report.late, report.unexplained) == (1, 0, 1)
    assert report.to_dict()["unexplained"] == 1


def test_without_a_count_a_mismatch_is_unexplained() -> None:
    served = ServedRow(stats("sku-1", T, views=1))  # a log of an older version
    online = stats("sku-1", T, views=1)
    report = check_skew(offline_store(), [served], [online], training_events())
    assert (report.checked, report.mismatches, report.late) == (2, 2, 0)
    assert report.sources == {"served": 1, "online": 1, "vectors": 0}


def test_counts_are_those_inside_the_horizon_up_to_the_time() -> None:
    counts = training_events()
    assert counts.within_horizon(PRODUCT_STATS.name, "sku-1", T) == 2
    assert counts.within_horizon(PRODUCT_STATS.name, "sku-1", T + 5) == 3
    assert counts.within_horizon("user_profile", "u:bob", T) == 2  # 7-day horizon
    assert counts.within_horizon(PRODUCT_STATS.name, "nothing", T) == 0
