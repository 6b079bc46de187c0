"""Fixtures of the unit tests: a fresh embedded system behind a real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import httpx
import pytest
from fastapi import FastAPI

from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import build_system
from shopper.config import load_config
from shopper.services.runtime import ApiServer
from tests.helpers import keyed
from tests.unit.api_harness import MAX_BATCH, MAX_K, Api, SwitchableApp
from tests.unit.factories import in_catalog


@pytest.fixture(scope="session")
def server() -> Iterator[tuple[SwitchableApp, str]]:
    switch = SwitchableApp()
    with ApiServer(cast(FastAPI, switch)) as url:
        yield switch, url


@pytest.fixture
def api(server: tuple[SwitchableApp, str]) -> Iterator[Api]:
    """The processor is not running: tests drive it with `drain(api.processor())`."""
    switch, url = server
    config = load_config(
        {}, max_batch=MAX_BATCH, max_k=MAX_K, microbatch_wait_s=0, popular_refresh_s=0
    )
    system = build_system(config, clock=ManualClock())
    in_catalog(system.state)  # the shop's items: only catalog items are recommended
    switch.target = system.app()
    with httpx.Client(base_url=url, timeout=10, headers=keyed(system)) as http:
        yield Api(system, http)
    switch.target = None
    system.close()
