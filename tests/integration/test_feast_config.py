"""shopper's config becomes Feast's repo config: no feature_store.yaml to edit."""

from __future__ import annotations

from pathlib import Path

import pytest
from feast import RepoConfig

from shopper.adapters.feast_repo import redis_connection_string
from shopper.adapters.feast_repo import repo_config as feast_repo_config
from shopper.bootstrap import build_system
from shopper.config import Config, load_config
from shopper.errors import ConfigError
from shopper.feature_wiring import feast_settings, feature_folder


def repo_config(config: Config) -> RepoConfig:
    return feast_repo_config(feast_settings(config))


def test_embedded_mode_keeps_every_feast_file_under_the_data_folder(tmp_path: Path) -> None:
    config = load_config({}, data_dir=tmp_path, feature_store="feast")
    repo = repo_config(config)
    feast_dir = (feature_folder(config) / "feast").resolve()
    assert repo.online_store.type == "sqlite"
    assert Path(repo.online_store.path).parent == feast_dir
    assert Path(repo.registry.path).parent == feast_dir
    assert repo.repo_path == feast_dir  # where the FileSources' offline files resolve
    assert repo.project == "shopper"


def test_production_mode_puts_the_online_store_on_the_cache_redis(tmp_path: Path) -> None:
    config = load_config(
        {"SHOPPER_CACHE_URL": "redis://:s3cret@cache.internal:6380/4"},
        data_dir=tmp_path,
        feature_store="feast",
        feature_project="shop_eu",
    )
    repo = repo_config(config)
    assert repo.online_store.type == "redis"
    assert repo.online_store.connection_string.startswith("cache.internal:6380,db=4,")
    assert "password=s3cret" in repo.online_store.connection_string
    assert repo.online_store.skip_dedup  # the last write wins, as in SQLite
    assert repo.online_store.key_ttl_seconds == 90 * 86_400
    assert repo.project == "shop_eu"  # the suffix of every Feast key in that Redis


def test_redis_urls_translate_to_feast_connection_strings() -> None:
    assert redis_connection_string("redis://127.0.0.1:6379/15").startswith("127.0.0.1:6379,db=15")
    tls = redis_connection_string("rediss://user:pw@h/0")
    assert tls.startswith("h:6379,db=0,") and "username=user,password=pw,ssl=true" in tls
    with pytest.raises(ConfigError):
        redis_connection_string("memory://")


def test_the_feature_store_is_off_unless_configured() -> None:
    system = build_system(load_config({}))
    try:
        assert system.features is None
    finally:
        system.close()
    with pytest.raises(ConfigError):
        load_config({"SHOPPER_FEATURE_STORE": "cassandra"})
