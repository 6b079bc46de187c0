"""One config object, read once at the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopper.errors import ConfigError

ENV_PREFIX = "SHOPPER_"


class Config(BaseModel):
    """Everything shopper can be told. `memory://` URLs select the embedded adapters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_url: str = "memory://"
    cache_url: str = "memory://"
    data_dir: Path = Path(".shopper")
    topic_prefix: str = "shopper."
    partitions: int = Field(4, ge=1)
    list_size: int = Field(50, ge=1, description="items written per list")
    default_k: int = Field(10, ge=1, description="items served when the page does not say")
    max_k: int = Field(100, ge=1)
    max_batch: int = Field(1000, ge=1, description="events per POST /v1/events")
    fresh_ttl_s: float = Field(900.0, gt=0, description="a list older than this is stale")
    lkg_ttl_s: float = Field(7 * 86400.0, gt=0, description="how long last-known-good lasts")
    popularity_half_life_s: float = Field(3600.0, gt=0)
    microbatch_max_events: int = Field(500, ge=1)
    microbatch_wait_s: float = Field(0.02, ge=0)
    popular_refresh_s: float = Field(1.0, ge=0)

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}events"

    @property
    def catalog_topic(self) -> str:
        return f"{self.topic_prefix}catalog"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}dead-letters"


def load_config(env: Mapping[str, str], **overrides: Any) -> Config:
    """Defaults, then `SHOPPER_*` variables from `env`, then explicit overrides (CLI flags)."""
    values: dict[str, Any] = {}
    for name in Config.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Config(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
