"""One config object, read once at the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shopper.config_files import SECRET_FIELDS, read_secrets, read_toml
from shopper.errors import ConfigError
from shopper.flags_url import check_flags_url, named_flag_file, named_flagd
from shopper.ports.processor_state import UNLISTED_CAP

ENV_PREFIX = "SHOPPER_"
MIN_KEY_LENGTH = 16


# The data folder when none is set: under the folder shopper runs in (keys, models, flags,
# the spool). Read when a Config is made, so tests and benchmarks point it at their own.
DATA_DIR = Path(".shopper")


class Config(BaseModel):
    """Everything shopper can be told. `memory://` URLs select the embedded adapters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_url: str = "memory://"
    cache_url: str = "memory://"
    data_dir: Path = Field(default_factory=lambda: DATA_DIR)
    topic_prefix: str = "shopper."
    partitions: int = Field(4, ge=1)
    memory_stream_retention_s: float = Field(
        3600.0,
        gt=0,
        description="how long the embedded stream (stream_url memory://) keeps a record, as "
        "a Kafka topic's retention.ms; a consumer further behind skips to the oldest kept",
    )
    memory_stream_max_records: int = Field(
        100_000,
        ge=1,
        description="records the embedded stream keeps per partition at most, the oldest "
        "dropped first (a bound on its memory: about 0.5 KB a record)",
    )
    allocator: Literal["auto", "jemalloc", "python"] = Field(
        "auto",
        description="memory allocator of `shopper serve`: auto (jemalloc where the system "
        "has it, which gives the memory of expired shoppers back; else CPython's own), "
        "jemalloc (or refuse to start), python (as started); see shopper.allocator",
    )
    spool_max_events: int = Field(
        100_000, ge=1, description="events held in memory while the broker is away (Kafka)"
    )
    spool_max_kbytes: int = Field(
        262_144,
        ge=1,
        description="size bound of that spool, in KiB; also of each process's disk spool "
        "(data_dir/spool), where undelivered events wait to be sent again",
    )
    spool_timeout_s: float = Field(
        86_400.0,
        ge=0,
        description="how long an event waits in memory for the broker before it moves to "
        "the disk spool; 0: forever",
    )
    group_session_timeout_s: float = Field(
        10.0, gt=0, description="a silent processor loses its partitions after this (Kafka)"
    )
    list_size: int = Field(50, ge=1, description="items written per list")
    default_k: int = Field(10, ge=1, description="items served when the page does not say")
    max_k: int = Field(100, ge=1)
    max_batch: int = Field(1000, ge=1, description="events per POST /v1/events")
    max_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="bytes of a request body at most (1 MiB); a bigger one is refused with "
        "413 before it is read",
    )
    dashboard_sample_s: float = Field(
        5.0,
        gt=0,
        description="how often an API process snapshots its counters and the experiment "
        "report for the dashboard's history (/dashboard, GET /v1/dashboard/series)",
    )
    fresh_ttl_s: float = Field(900.0, gt=0, description="a list older than this is stale")
    lkg_ttl_s: float = Field(7 * 86400.0, gt=0, description="how long last-known-good lasts")
    page_near_cache_max_age_s: float = Field(
        1.0,
        gt=0,
        description="the API's copy of the sold-out set and popular lists (Redis) is "
        "used while it is at most this old; else a page checks stock in Redis",
    )
    page_redis_timeout_s: float = Field(
        0.025,
        gt=0,
        description="how long a page read waits for Redis before answering from the API's "
        "copy of the popular lists and sold-out set (README, Readiness and faults)",
    )
    page_fallback_max_age_s: float = Field(
        300.0,
        gt=0,
        description="while Redis is down, pages are answered from that copy while it is at "
        "most this old; older, they get an empty list",
    )
    popularity_half_life_s: float = Field(3600.0, gt=0)
    max_event_skew_s: float = Field(
        300.0,
        ge=0,
        description="an event whose ts is further ahead of the server's clock than this "
        "is rejected (422, with the reason); older events are taken, as history",
    )
    segment_countries: list[str] | None = Field(
        None,
        description="country codes with a popularity segment of their own (any other "
        "counts as country:other); unset: every ISO 3166-1 alpha-2 code",
    )
    segment_devices: list[str] = Field(
        ["desktop", "mobile", "tablet", "app"],
        description="device kinds with a popularity segment of their own (any other "
        "counts as device:other)",
    )
    microbatch_max_events: int = Field(
        2000,
        ge=1,
        description="events per micro-batch at most; a backlog is worked off in batches this "
        "big (a shopper's events in one batch are one re-rank), live traffic in the events "
        "of `microbatch_wait_s`",
    )
    state_transaction_events: int = Field(
        10,
        ge=1,
        description="events per processor state transaction; a Redis transaction blocks "
        "the page reads sharing that Redis while it runs",
    )
    microbatch_wait_s: float = Field(
        0.05, ge=0, description="how long a micro-batch gathers events after the first"
    )
    popular_refresh_s: float = Field(1.0, ge=0)
    redis_key_prefix: str = Field("shopper:", description="prefix of every key shopper writes")
    session_ttl_s: float = Field(7 * 86400.0, gt=0, description="idle time a session is kept")
    dedup_ttl_s: float = Field(
        3600.0, gt=0, description="how long applied event ids are remembered"
    )
    co_occurrence_cap: int = Field(
        500, ge=1, description="co-occurrence counts kept per item (Redis), trimmed at twice"
    )
    max_unlisted_items: int = Field(
        UNLISTED_CAP,
        ge=0,
        description="items the catalog does not list whose behaviour is counted (for when "
        "it lists them), at most: past it, the counts of those seen least recently go",
    )
    feature_store: Literal["off", "memory", "feast"] = Field(
        "off",
        description="off; memory (in-process, for tests); feast (SQLite online store under "
        "data_dir, or Feast's Redis online store when cache_url is redis://)",
    )
    feature_repo: Path = Field(
        Path("feature_repo"), description="folder of the Feast definitions (feature views)"
    )
    feature_project: str = Field(
        "shopper",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$",
        description="Feast project: names the registry entries and ends every Feast Redis key",
    )
    feature_log_sample: float = Field(
        0.05,
        ge=0,
        le=1,
        description="share of entities whose served feature rows are logged, and of shoppers "
        "whose learned-ranker feature vectors are (for check-skew)",
    )

    model_dir: Path | None = Field(
        None,
        description="where trained model versions are kept (default data_dir/models); "
        "processor replicas share it",
    )
    model_poll_s: float = Field(
        5.0, gt=0, description="how often a processor looks for a newly promoted model"
    )
    flags_file: Path | None = Field(
        None,
        description="the flagd flag file of the experiment: which model each shopper is "
        "served (default data_dir/flags.json); `shopper experiment` edits it",
    )
    flags_url: str | None = Field(
        None,
        description="where each process gets the experiment's flags: unset or file:// (the "
        "flag file, flags_file; file:///PATH names it), or flagd://HOST:PORT (a flagd "
        "daemon's sync service, evaluated in process)",
    )
    shadow_log_sample: float = Field(
        0.05,
        ge=0,
        le=1,
        description="share of shoppers whose shadow variants' lists are logged "
        "(data_dir/experiments/shadow-lists); every shadow list is scored and stored",
    )
    guardrail_metric: Literal[
        "conversion_rate", "add_to_cart_rate", "ctr", "revenue_per_session"
    ] = Field(
        "conversion_rate",
        description="the experiment guardrail kills a challenger significantly worse than "
        "the champion on this metric",
    )
    guardrail_min_sessions: int = Field(
        200, ge=1, description="sessions a challenger needs before the guardrail judges it"
    )
    guardrail_alpha: float = Field(
        0.01, gt=0, lt=1, description="the guardrail's significance level"
    )
    guardrail_check_s: float = Field(
        30.0, ge=0, description="how often the guardrail checks (0: never)"
    )
    repurchase: Literal["exclude", "allow"] = Field(
        "exclude",
        description="exclude: never recommend what a shopper bought (durable goods); allow: "
        "their own purchases may come back, boosted as training learned (consumables)",
    )
    trending_weight: float = Field(
        0.3,
        ge=0,
        description="how much a trending item (live popularity far above its "
        "trained popularity) is lifted, as a share of a list's top score; 0: off",
    )
    price_drop_weight: float = Field(
        0.5,
        ge=0,
        description="how much a price drop lifts an item in the lists it is on "
        "(score times 1 + weight x drop share, half off or more counting fully), for a day; 0: off",
    )
    learned_ranker: bool = Field(
        True,
        description="order each shopper's candidates by the promoted model's learned ranker "
        "(read from the online feature store; needs feature_store on); false: the blends' order",
    )
    ranker_feature_wait_s: float = Field(
        0.05,
        ge=0,
        description="how long the learned ranker waits for a micro-batch's features to be "
        "online before it ranks on the rows it has (a batch behind)",
    )
    reshow_viewed: bool = Field(
        False, description="let items viewed this session back into the top of the list"
    )
    tier_few_from: int = Field(
        1, ge=1, description="interactions from which a shopper gets content-based lists"
    )
    tier_many_from: int = Field(
        10, ge=1, description="interactions from which a shopper gets collaborative filtering"
    )
    new_item_hours: float = Field(
        72.0,
        ge=0,
        description="items younger than this are scored content-based until they have behaviour",
    )
    # API keys (README, "Keys"): SecretStr, so no repr, log or error shows them.
    admin_token: SecretStr | None = Field(
        None,
        description="API key for catalog, stock and price changes (and everything else); "
        "unset: generated into data_dir/keys.toml by `shopper serve`",
    )
    ingest_key: SecretStr | None = Field(
        None,
        description="API key for behaviour events (the shop's frontend or tag server); "
        "unset: generated into data_dir/keys.toml by `shopper serve`",
    )
    read_key: SecretStr | None = Field(
        None,
        description="API key the reads need (recommendations, similar, experiments, "
        "dashboard series); unset: reads are open",
    )
    secrets_file: Path | None = Field(
        None,
        description="a TOML file of admin_token, ingest_key and read_key, read after the "
        "config file (SHOPPER_* variables and flags still win); keep it mode 0600",
    )

    @property
    def models_folder(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def flags_path(self) -> Path:
        """The flag file: the one served with file:// (or no `flags_url`), and the one
        `shopper experiment` edits (with flagd://, the daemon's own source)."""
        return self._named_flag_file() or self.flags_file or self.data_dir / "flags.json"

    def _named_flag_file(self) -> Path | None:
        return named_flag_file(self.flags_url)

    @property
    def flagd_address(self) -> tuple[str, int] | None:
        """(host, port) of the flagd daemon `flags_url` names; None: the flag file serves."""
        return named_flagd(self.flags_url)

    # The flags URL's checks raise ConfigError, which pydantic lets through as it is: its
    # message is whole, where a ValidationError's would repeat the field's name.
    @field_validator("flags_url")
    @classmethod
    def _check_flags_url(cls, url: str | None) -> str | None:
        check_flags_url(url)
        return url

    @field_validator(*SECRET_FIELDS)
    @classmethod
    def _check_key(cls, key: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"invalid configuration: {info.field_name} is shorter than "
                f"{MIN_KEY_LENGTH} characters; `shopper keys --new` prints a good one"
            )
        return key

    @field_validator("segment_countries", "segment_devices", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """A list, or comma-separated text (as an environment variable holds it)."""
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _one_flag_file(self) -> Config:
        named = self._named_flag_file()
        if named and self.flags_file and named != self.flags_file:
            raise ConfigError(
                f"invalid configuration: flags_file ({self.flags_file}) and flags_url "
                f"({self.flags_url}) name two different flag files; set one of them"
            )
        return self

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}events"

    @property
    def catalog_topic(self) -> str:
        return f"{self.topic_prefix}catalog"

    @property
    def processor_group(self) -> str:
        """The processors' consumer group: one per deployment (topic prefix)."""
        return f"{self.topic_prefix}processor"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}dead-letters"

    @property
    def item_events_topic(self) -> str:
        """Item events, keyed by item id: the processors republish them here so that one
        replica sees all of an item's events (the events topic is keyed by shopper)."""
        return f"{self.topic_prefix}item-events"

    @property
    def item_features_group(self) -> str:
        """The consumer group that computes item features from `item_events_topic`."""
        return f"{self.topic_prefix}item-features"


def load_config(
    env: Mapping[str, str], config_file: Path | None = None, **overrides: Any
) -> Config:
    """Defaults, then a TOML file (`config_file`, else `SHOPPER_CONFIG`), then `SHOPPER_*`
    variables from `env`, then explicit overrides (CLI flags): later wins."""
    values: dict[str, Any] = {}
    path = config_file or (Path(env["SHOPPER_CONFIG"]) if env.get("SHOPPER_CONFIG") else None)
    if path is not None:
        values.update(read_toml(path))
    later: dict[str, Any] = {}
    for name in Config.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env:
            later[name] = env[key]
    later.update({k: v for k, v in overrides.items() if v is not None})
    secrets = later.get("secrets_file", values.get("secrets_file"))
    if secrets is not None:
        values.update(read_secrets(Path(secrets)))
    values.update(later)
    try:
        return Config(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
