"""An API-only shopper server whose cache is pre-filled with benchmark lists.

`python -m benchmarks.serve_filled CACHE_URL PORT USERS [PREFIX]`: the same lists go into the
in-memory and the Redis cache, so the two page paths are compared on equal data.
"""

from __future__ import annotations

import sys

import uvicorn

from benchmarks.cache import fill
from shopper.bootstrap import build_system
from shopper.config import load_config


def main() -> None:
    cache_url, port, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    prefix = sys.argv[4] if len(sys.argv) > 4 else "shopper:"
    system = build_system(load_config({}, cache_url=cache_url, redis_key_prefix=prefix))
    fill(system.cache, users)
    uvicorn.run(system.app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
