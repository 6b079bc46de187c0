"""The one exception root of shopper."""


class ShopperError(Exception):
    """Base of every error shopper raises on purpose."""


class ConfigError(ShopperError):
    """The configuration cannot be used (unknown URL scheme, bad value)."""


class InvalidEvent(ShopperError):
    """An event failed validation; `reasons` says why, field by field."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class MissingExtra(ShopperError):
    """An optional integration was selected but its package is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'shopper[{extra}]'"
        )


class SpoolFull(ShopperError):
    """The local spool of events waiting for the stream's broker is full: back off and retry."""

    def __init__(self, max_events: int, max_kbytes: int) -> None:
        super().__init__(
            f"the local event spool is full (spool_max_events={max_events}, "
            f"spool_max_kbytes={max_kbytes}): the stream's broker is not taking events as fast "
            "as they arrive, or is unreachable; retry later"
        )
        self.max_events = max_events
        self.max_kbytes = max_kbytes
