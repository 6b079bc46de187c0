"""The clients shipped with shopper send the right key: the demo's shop (admin token for
the catalog and stock, ingest key for its shoppers' events) and `shopper load`."""

from __future__ import annotations

import logging

import pytest

from shopper.api.auth import AUDIT_LOGGER
from shopper.demo.client import ShopClient
from shopper.loader import Keys
from tests.unit.api_harness import Api
from tests.unit.factories import wire


def test_the_demo_shop_sends_each_write_with_its_key(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    keys = api.system.keys
    shop = ShopClient(str(api.http.base_url), keys.admin, keys.ingest)
    try:
        shop.upsert_items([{"item_id": "a", "stock": 2}, {"item_id": "b", "stock": 2}])
        view = wire("v1", "view", user_id="me", item_id="a")
        shop.post([view])
        shop.post([wire("s1", "stock_change", item_id="b", quantity=0)])
    finally:
        shop.close()
    assert (shop.stats.events_accepted, shop.stats.errors) == (4, 0)
    # The catalog and the stock change went with the admin token (audited), the view not.
    audited = [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]
    assert len(audited) == 2 and not any('"view"' in line for line in audited)


def test_a_shop_with_only_the_ingest_key_cannot_change_stock(api: Api) -> None:
    shop = ShopClient(str(api.http.base_url), ingest_key=api.system.keys.ingest)
    try:
        shop.post([wire("s1", "stock_change", item_id="b", quantity=0)])
    finally:
        shop.close()
    assert (shop.stats.events_accepted, shop.stats.errors) == (0, 1)
    assert api.published() == 0


def test_shopper_load_sends_catalog_records_with_the_admin_token() -> None:
    keys = Keys(admin_token="admin-token-0123456789", ingest_key="ingest-key-0123456789")
    admin = {"authorization": "Bearer admin-token-0123456789"}
    ingest = {"authorization": "Bearer ingest-key-0123456789"}
    assert keys.headers("/v1/catalog/items", [{"item_id": "a"}]) == admin
    assert keys.headers("/v1/events", [{"type": "view"}, {"type": "price_change"}]) == admin
    assert keys.headers("/v1/events", [{"type": "view"}, "not an event"]) == ingest
    only_admin = Keys(admin_token="admin-token-0123456789")
    assert only_admin.headers("/v1/events", [{"type": "view"}]) == admin
    assert Keys().headers("/v1/events", [{"type": "view"}]) == {}
