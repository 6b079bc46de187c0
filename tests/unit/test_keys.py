"""Key settings (env, secrets file), the generated keys file, and keys kept out of reprs,
errors and logs."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopper.cli import app
from shopper.config import Config, load_config
from shopper.demo.runner import config_env
from shopper.errors import ConfigError
from shopper.keys import ApiKeys, client_keys, dump_with_secrets, keys_path, with_keys

ADMIN = "admin-token-of-the-tests-0123"
INGEST = "ingest-key-of-the-tests-0123"
READ = "read-key-of-the-tests-012345"


def test_keys_come_from_the_environment_and_stay_out_of_the_repr() -> None:
    env = {"SHOPPER_ADMIN_TOKEN": ADMIN, "SHOPPER_INGEST_KEY": INGEST, "SHOPPER_READ_KEY": READ}
    config = load_config(env)
    assert config.admin_token is not None and config.admin_token.get_secret_value() == ADMIN
    assert config.read_key is not None and config.read_key.get_secret_value() == READ
    keys = ApiKeys.of(config)
    assert (keys.admin, keys.ingest, keys.read) == (ADMIN, INGEST, READ)
    for text in (repr(config), str(config), repr(keys), config.model_dump_json()):
        assert ADMIN not in text and INGEST not in text and READ not in text


def test_a_secrets_file_is_read_after_the_config_file_and_before_the_environment(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'admin_token = "{ADMIN}"\ningest_key = "{INGEST}"\n')
    settings = tmp_path / "shopper.toml"
    settings.write_text(f'secrets_file = "{secrets}"\nadmin_token = "overridden-by-secrets"\n')
    env = {"SHOPPER_INGEST_KEY": "ingest-key-from-the-environment"}
    config = load_config(env, settings)
    assert config.admin_token is not None and config.admin_token.get_secret_value() == ADMIN
    assert config.ingest_key is not None
    assert config.ingest_key.get_secret_value() == "ingest-key-from-the-environment"


def test_a_secrets_file_holds_keys_only(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('cache_url = "redis://elsewhere"\n')
    with pytest.raises(ConfigError, match=r"unknown setting.*cache_url"):
        load_config({"SHOPPER_SECRETS_FILE": str(secrets)})


def test_a_short_key_is_refused_without_being_shown() -> None:
    with pytest.raises(ConfigError, match="admin_token is shorter than 16") as caught:
        load_config({"SHOPPER_ADMIN_TOKEN": "hunter2"})
    assert "hunter2" not in str(caught.value)


def test_no_key_configured_is_a_random_key_not_an_open_door() -> None:
    first, second = ApiKeys.of(load_config({})), ApiKeys.of(load_config({}))
    assert first.admin != second.admin and first.ingest != second.ingest
    assert len(first.admin) >= 40 and first.read is None


def test_the_keys_file_is_made_once_with_mode_0600_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = load_config({}, data_dir=tmp_path / "data")
    first = with_keys(config)
    path = keys_path(config)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = with_keys(config)  # a restart
    assert first.admin_token is not None and again.admin_token is not None
    assert first.admin_token.get_secret_value() == again.admin_token.get_secret_value()
    assert first.ingest_key is not None and again.ingest_key is not None
    assert first.ingest_key.get_secret_value() == again.ingest_key.get_secret_value()
    assert first.admin_token.get_secret_value() != first.ingest_key.get_secret_value()
    # Its path is logged, never a key.
    assert str(path) in caplog.text
    assert first.admin_token.get_secret_value() not in caplog.text
    assert first.ingest_key.get_secret_value() not in caplog.text
    # The file is a secrets file: pointing `secrets_file` at it gives the same keys.
    same = load_config({"SHOPPER_SECRETS_FILE": str(path)})
    assert same.admin_token == first.admin_token and same.ingest_key == first.ingest_key


def test_configured_keys_make_no_keys_file(tmp_path: Path) -> None:
    config = load_config({}, data_dir=tmp_path, admin_token=ADMIN, ingest_key=INGEST)
    assert with_keys(config) is config
    assert not keys_path(config).exists()


def test_a_configured_admin_token_beside_a_generated_ingest_key(tmp_path: Path) -> None:
    config = with_keys(load_config({}, data_dir=tmp_path, admin_token=ADMIN))
    assert config.admin_token is not None and config.admin_token.get_secret_value() == ADMIN
    assert config.ingest_key is not None and len(config.ingest_key.get_secret_value()) >= 40


def test_clients_find_the_keys_of_a_local_server(tmp_path: Path) -> None:
    config = load_config({}, data_dir=tmp_path)
    assert client_keys(config) == (None, None)  # no server ran here yet: nothing made
    assert not keys_path(config).exists()
    served = with_keys(config)
    assert served.admin_token is not None and served.ingest_key is not None
    expected = (served.admin_token.get_secret_value(), served.ingest_key.get_secret_value())
    assert client_keys(config) == expected
    # Given keys win, and a given one is not mixed with the file's other one.
    assert client_keys(config, admin=ADMIN) == (ADMIN, None)


def test_a_child_process_gets_the_keys_in_clear() -> None:
    config = load_config({}, admin_token=ADMIN, ingest_key=INGEST, read_key=READ)
    child = Config.model_validate_json(json.dumps(dump_with_secrets(config)))
    assert ApiKeys.of(child) == ApiKeys.of(config)


def test_shopper_keys_prints_the_keys_and_where_they_are(tmp_path: Path) -> None:
    run = CliRunner().invoke(app, ["keys", "--json", "--data-dir", str(tmp_path)])
    assert run.exit_code == 0, run.output
    shown = json.loads(run.stdout)
    config = with_keys(load_config({}, data_dir=tmp_path))
    assert shown["keys_file"] == str(keys_path(config))
    assert config.admin_token is not None
    assert shown["admin_token"] == config.admin_token.get_secret_value()
    assert shown["read_key"] is None


def test_shopper_config_does_not_print_keys() -> None:
    run = CliRunner().invoke(app, ["config"], env={"SHOPPER_ADMIN_TOKEN": ADMIN})
    assert run.exit_code == 0, run.output
    assert ADMIN not in run.stdout
    assert "admin_token" in run.stdout


def test_one_key_for_two_kinds_is_refused() -> None:
    with pytest.raises(ConfigError, match="must differ"):
        ApiKeys.of(load_config({}, admin_token=ADMIN, ingest_key=ADMIN))
    with pytest.raises(ConfigError, match="must differ"):
        ApiKeys.of(load_config({}, admin_token=ADMIN, ingest_key=INGEST, read_key=INGEST))


def test_the_demo_passes_its_settings_and_keys_to_its_servers_whole() -> None:
    config = load_config(
        {}, admin_token=ADMIN, ingest_key=INGEST, read_key=READ, segment_countries=["de", "fr"]
    )
    assert load_config(config_env(config)) == config
