"""The `flags_url` setting's two forms: where each process gets the experiment's flags.

`flagd://HOST:PORT` names a flagd daemon's sync service (flags evaluated in process);
`file://` the flag file (`flags_file`, or its default), and `file:///PATH` a flag file by
its path. Anything else is a `ConfigError` that gives both forms.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from shopper.errors import ConfigError

_FLAGS_URL_FORMS = (
    "use flagd://HOST:PORT (a flagd daemon's sync service; flagd serves it on port 8015) "
    "or file:// (the flag file, flags_file) or file:///ABSOLUTE/PATH"
)


def flagd_address_of(url: str) -> tuple[str, int]:
    """`flagd://HOST:PORT` -> (host, port), the host bracketed when IPv6 (a gRPC target)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    rest = parts.path.strip("/") or parts.query or parts.fragment or parts.username
    if parts.scheme != "flagd" or not parts.hostname or not port or rest:
        raise ConfigError(
            f"invalid configuration: flags_url {url!r} is not a flagd address; {_FLAGS_URL_FORMS}"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host, port


def flags_file_of(url: str) -> Path | None:
    """`file:///PATH` -> the path; `file://` -> None (flags_file, or its default)."""
    parts = urlsplit(url)
    if (
        parts.scheme != "file"
        or not url.startswith("file://")
        or parts.netloc
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(
            f"invalid configuration: flags_url {url!r} is not a flags URL; {_FLAGS_URL_FORMS}"
        )
    return Path(parts.path) if parts.path.strip("/") else None


def named_flag_file(url: str | None) -> Path | None:
    """The flag file a `file:///PATH` URL names; None for any other (or no) URL."""
    return flags_file_of(url) if url and urlsplit(url).scheme == "file" else None


def named_flagd(url: str | None) -> tuple[str, int] | None:
    """(host, port) of the daemon a `flagd://` URL names; None for any other (or no) URL."""
    return flagd_address_of(url) if url and urlsplit(url).scheme == "flagd" else None


def check_flags_url(url: str | None) -> None:
    """A `ConfigError` unless `url` is unset or one of the two forms."""
    if url is not None and not named_flagd(url):
        flags_file_of(url)
