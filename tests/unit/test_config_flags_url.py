"""`flags_url`: where the flag client gets the experiment's flags, checked when the
configuration is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopper.config import load_config
from shopper.errors import ConfigError


def test_without_a_flags_url_the_flag_file_serves() -> None:
    config = load_config({}, data_dir=Path("/srv/shopper"))
    assert config.flagd_address is None
    assert config.flags_path == Path("/srv/shopper/flags.json")


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("flagd://flagd:8015", ("flagd", 8015)),
        ("flagd://10.0.0.7:9090/", ("10.0.0.7", 9090)),
        ("flagd://[::1]:8015", ("[::1]", 8015)),  # a gRPC target
    ],
)
def test_a_flagd_url_names_the_daemon_and_the_commands_keep_the_flag_file(
    url: str, address: tuple[str, int]
) -> None:
    config = load_config({"SHOPPER_FLAGS_URL": url}, data_dir=Path("/srv/shopper"))
    assert config.flagd_address == address
    assert config.flags_path == Path("/srv/shopper/flags.json")


def test_a_file_url_is_the_flag_file_named_or_flags_file() -> None:
    assert load_config({}, flags_url="file://", flags_file=Path("/a.json")).flags_path == Path(
        "/a.json"
    )
    named = load_config({}, flags_url="file:///etc/shopper/flags.json")
    assert (named.flagd_address, named.flags_path) == (None, Path("/etc/shopper/flags.json"))


@pytest.mark.parametrize(
    "url",
    [
        "flagd://flagd",  # no port
        "flagd://flagd:0",
        "flagd://flagd:http",
        "flagd://flagd:8015/flags",
        "flagd://user@flagd:8015",
        "flagd:flagd:8015",
        "file:flags.json",
        "file://host/flags.json",
        "http://flagd:8013",
        "flags.json",
    ],
)
def test_a_flags_url_of_neither_form_is_refused_saying_what_to_use(url: str) -> None:
    with pytest.raises(ConfigError, match=r"flags_url .* use flagd://HOST:PORT") as refused:
        load_config({"SHOPPER_FLAGS_URL": url})
    assert str(refused.value).startswith(f"invalid configuration: flags_url {url!r}")


def test_a_file_url_and_flags_file_naming_two_files_are_refused() -> None:
    with pytest.raises(ConfigError, match="name two different flag files"):
        load_config({}, flags_url="file:///a.json", flags_file=Path("/b.json"))
