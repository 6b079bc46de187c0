"""The processor state's marker in Redis (`<prefix>state_kept`): set once the catalog is
folded in, gone when Redis lost its data (services/state_rebuild.py)."""

from __future__ import annotations

from shopper.adapters.redis_cache import redis_from_url


class RedisStateMarker:
    def __init__(self, url: str, prefix: str) -> None:
        self._client = redis_from_url(url)
        self._key = f"{prefix}state_kept"

    def present(self) -> bool:
        return bool(self._client.exists(self._key))

    def mark(self) -> None:
        self._client.set(self._key, b"1")

    def close(self) -> None:
        self._client.close()
