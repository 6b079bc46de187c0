"""What `FlagClient.assign` costs on the page path: the OpenFeature flag file client with
its per-shopper cache (hits), without it (every call a full SDK evaluation), and flagd's
core alone (the in-memory client). `python -m benchmarks.flags`; prints one JSON object of
microseconds per call, medians of five rounds."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shopper.adapters.flagd_format import write_flag_file
from shopper.adapters.memory_flags import InMemoryFlagClient
from shopper.adapters.openfeature_flags import OpenFeatureFlagClient
from shopper.domain.experiment import Experiment, Variant
from shopper.ports.flags import Assignment

SHOPPERS = 20_000
ROUNDS = 5
EXPERIMENT = Experiment((Variant("champion", "promoted", 98), Variant("challenger", "baseline", 2)))


def per_call_us(assign: Callable[[str], Assignment], subjects: list[str]) -> float:
    start = time.perf_counter_ns()
    for subject in subjects:
        assign(subject)
    return (time.perf_counter_ns() - start) / len(subjects) / 1000


def main() -> None:
    subjects = [f"shopper-{i}" for i in range(SHOPPERS)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flags.json"
        write_flag_file(path, EXPERIMENT)
        cached = OpenFeatureFlagClient(path)
        uncached = OpenFeatureFlagClient(path, cache_size=0)
        memory = InMemoryFlagClient(EXPERIMENT)
        per_call_us(cached.assign, subjects)  # fill the cache
        rounds: dict[str, list[float]] = {"cached": [], "uncached": [], "flagd_core": []}
        for _ in range(ROUNDS):
            rounds["cached"].append(per_call_us(cached.assign, subjects))
            rounds["uncached"].append(per_call_us(uncached.assign, subjects))
            rounds["flagd_core"].append(per_call_us(memory.assign, subjects))
        cached.close()
        uncached.close()
    result = {name: round(statistics.median(us), 2) for name, us in rounds.items()}
    result["speedup"] = round(result["uncached"] / result["cached"], 1)
    print(json.dumps({"assign_us_per_call": result, "shoppers": SHOPPERS}))


if __name__ == "__main__":
    main()
