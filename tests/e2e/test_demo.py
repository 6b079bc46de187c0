"""`shopper demo` end to end, small: embedded, on Kafka + Redis, and on a real data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopper.config import load_config
from shopper.demo.runner import DemoOptions, run_demo

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _assert_sound(report: dict[str, Any]) -> None:
    assert report["http_errors"] == 0
    assert report["processor_caught_up"] is True
    assert report["events_processed"] == report["events_ingested"] > 0
    assert report["sold_out_items_served"] == 0
    assert report["recommendation_requests"] > 0
    assert report["personalized_share"] + report["fallback_share"] == pytest.approx(1.0)


def test_embedded_demo_serves_no_sold_out_item_and_mostly_personal_lists(
    tmp_path: Path,
) -> None:
    config = load_config({}, data_dir=tmp_path)
    report = run_demo(config, DemoOptions(shoppers=60, progress=False))
    _assert_sound(report)
    assert report["flash_sale"]["items"] > 0
    assert report["personalized_share"] > 0.5
    assert report["items_served"] > 0


@pytest.mark.kafka
@pytest.mark.redis
def test_demo_on_kafka_and_redis_keeps_its_lists_in_redis(
    tmp_path: Path, kafka_broker: str, redis_url: str
) -> None:
    config = load_config(
        {},
        data_dir=tmp_path,
        stream_url=f"kafka://{kafka_broker}",
        cache_url=redis_url,
        group_session_timeout_s=2.0,
    )
    report = run_demo(config, DemoOptions(shoppers=40, progress=False))
    _assert_sound(report)
    assert report["lists_in_redis"] > 0


def test_demo_replays_a_real_data_set(tmp_path: Path) -> None:
    folder = SHARED_DATA / "rees46-multicategory-2019oct-head"
    if not folder.is_dir():
        pytest.skip("the shared data sets are not on this machine")
    config = load_config({}, data_dir=tmp_path)
    report = run_demo(config, DemoOptions(dataset=folder, max_events=1500, progress=False))
    _assert_sound(report)
    assert report["traffic"] == "rees46-multicategory-2019oct-head"
    assert report["items_withdrawn_after_last_purchase"] > 0


@pytest.mark.kafka
@pytest.mark.redis
def test_demo_with_feast_on_redis_leaves_no_key_behind(
    tmp_path: Path, kafka_broker: str, redis_url: str
) -> None:
    """Feast's Redis keys end with the Feast project, not shopper's key prefix: the run
    has a project of its own, and its keys go with the rest."""
    import redis

    config = load_config(
        {},
        data_dir=tmp_path,
        stream_url=f"kafka://{kafka_broker}",
        cache_url=redis_url,
        group_session_timeout_s=2.0,
        feature_store="feast",
    )
    client = redis.Redis.from_url(redis_url)
    before = set(client.scan_iter(count=1000))
    report = run_demo(config, DemoOptions(shoppers=30, progress=False))
    _assert_sound(report)
    assert report["features"]["rows_pushed"] > 0
    assert set(client.scan_iter(count=1000)) == before
    client.close()
