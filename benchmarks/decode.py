"""The processor's decode path: `codec.decode_event` over 10,000 shop-like stream records,
CPU time, the best of its rounds (the machine's noise only adds). With `--against FILE`
(a codec module, e.g. `git show HEAD:src/shopper/codec.py > FILE`) both are timed,
interleaved, on the same records. `python -m benchmarks.decode [--against FILE]`; prints
one JSON object of microseconds per event."""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from shopper import codec

RECORDS = 10_000
ROUNDS = 15
# The shop-like mix of event types (per 100), as the processor reads them.
MIX = {
    "view": 60,
    "click": 15,
    "add_to_cart": 8,
    "purchase": 3,
    "dwell": 5,
    "impression": 5,
    "stock_change": 2,
    "price_change": 2,
}


def records(n: int = RECORDS, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    kinds = [k for k, share in MIX.items() for _ in range(share)]
    out = []
    for i in range(n):
        kind = rng.choice(kinds)
        event: dict[str, Any] = {"event_id": f"ev-{i}", "type": kind}
        event["ts"] = "2026-11-27T10:15:02.123000Z"
        if kind not in ("stock_change", "price_change"):
            event["user_id"] = f"u-{rng.randrange(8000)}"
            event["session_id"] = f"s-{rng.randrange(20000)}"
            event["context"] = {"device": "mobile", "country": "GB"}
        if kind != "impression":
            event["item_id"] = f"sku-{rng.randrange(5000)}"
        extra = {
            "dwell": {"dwell_ms": 1200},
            "stock_change": {"quantity": 3},
            "price_change": {"price": 9.5},
            "purchase": {"price": 9.5},
            "impression": {"list_id": "l-1", "variant": "champion"},
        }
        out.append(orjson.dumps(event | extra.get(kind, {})))
    return out


def load_codec(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("codec_against", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["codec_against"] = module  # its models resolve their annotations here
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", type=Path, help="another codec module to time as well")
    args = parser.parse_args()
    decoders: dict[str, Callable[[bytes], Any]] = {"working tree": codec.decode_event}
    if args.against:
        decoders[str(args.against)] = load_codec(args.against).decode_event
    data = records()
    best = dict.fromkeys(decoders, float("inf"))
    for _ in range(ROUNDS):
        for name, decode in decoders.items():
            started = time.process_time()
            for record in data:
                decode(record)
            best[name] = min(best[name], time.process_time() - started)
    us = {name: round(t * 1e6 / len(data), 2) for name, t in best.items()}
    print(json.dumps({"records": len(data), "us_per_event": us}))


if __name__ == "__main__":
    main()
