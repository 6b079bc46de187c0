"""A processor made N times slower, for the freshness benchmark's "model slow" state.

`python -m benchmarks.slow_processor --port PORT [--slowdown 10]` runs what
`shopper serve --role processor` runs (settings from the SHOPPER_* variables, the system built
by the composition root, the same niceness and GIL switch interval, `/healthz` and `/v1/stats`
on PORT), except that each micro-batch's processing (folding events into state, ranking,
writing lists) is followed by a sleep of `slowdown - 1` times its own duration: a model that
takes ten times as long, without a knob in shopper itself.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from shopper.bootstrap import build_system
from shopper.config import load_config
from shopper.services.priority import BACKGROUND_NICENESS
from shopper.services.processor import Processor, ProcessorRunner


def slow_down(processor: Processor, slowdown: float) -> None:
    """Make each of `processor`'s micro-batches take `slowdown` times as long: after the
    batch's own processing, sleep (slowdown - 1) times what it took (the GIL is free
    meanwhile, as it would be while a model server computes)."""
    process: Callable[[Any], None] = processor._process

    def slowed(records: Any) -> None:
        started = time.perf_counter()
        process(records)
        time.sleep((slowdown - 1) * (time.perf_counter() - started))

    processor._process = slowed  # type: ignore[method-assign,unused-ignore]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slow_processor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slowdown", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"
    )
    # As shopper.services.runtime.serve does for role=processor.
    os.nice(BACKGROUND_NICENESS)
    system = build_system(load_config(os.environ))
    try:
        if system.features is not None:
            system.features.start()
        system.start_guardrail()
        sys.setswitchinterval(0.001)
        processor = system.processor()
        slow_down(processor, args.slowdown)
        runner = ProcessorRunner(processor)
        runner.start()
        system.runners.append(runner)
        app = system.ops_app()
        gc.freeze()
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    finally:
        system.close()


if __name__ == "__main__":
    main()
