"""Running shopper processes: the API server, the processor loop, or both."""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from shopper.bootstrap import build_system
from shopper.config import Config
from shopper.errors import ConfigError
from shopper.keys import dump_with_secrets
from shopper.services.priority import BACKGROUND_NICENESS


class ApiServer:
    """Uvicorn on a background thread; `with ApiServer(app) as url:` for demos and tests."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", access_log=False, lifespan="auto"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="shopper-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"API server did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


WORKER_CONFIG_ENV = "SHOPPER_WORKER_CONFIG"  # the parent's settings, for API workers


def serve(config: Config, host: str, port: int, role: str, workers: int = 1) -> None:
    """Run until interrupted. `role` is api, processor, or all; an API may run `workers`
    processes (uvicorn's), each with the same settings and its own connections."""
    if workers > 1:
        if role != "api":
            raise ConfigError(
                f"--workers {workers} needs --role api: run the processor as its own process"
            )
        # With the keys in clear: a dump masks them (the workers' env is this process's).
        os.environ[WORKER_CONFIG_ENV] = json.dumps(dump_with_secrets(config))
        uvicorn.run(
            "shopper.services.runtime:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
        )
        return
    if role == "processor":
        # A processor is background work: where it shares a machine with API replicas,
        # Redis or the broker (a small deployment, the demo), the page path runs first.
        # Its list freshness budget is tens of seconds, a page's is milliseconds. Lowered
        # before it builds anything, so its start-up (a restart under load) and every
        # thread it starts yield to pages too.
        os.nice(BACKGROUND_NICENESS)
    system = build_system(config)
    try:
        if role in ("processor", "all") and system.features is not None:
            # Ready before the first event: /healthz answers only once it is.
            system.features.start()
        if role in ("processor", "all"):
            system.start_guardrail()
            # The experiment report is computed here and published for the API replicas.
            system.start_report_publisher()
        if role == "processor":
            # The GIL changes hands every 1 ms rather than 5: the feature pipeline's
            # thread (Feast pushes) must not hold up a micro-batch by whole slices.
            sys.setswitchinterval(0.001)
            system.start_processor()
        if role == "all":
            # The API and the processor share this process: the GIL changes hands every
            # 1 ms rather than every 5 ms, so a page read never waits behind a whole
            # re-ranking slice. The GIL, not the OS, decides who runs here: a lower OS
            # priority for the processor's thread bought the page nothing measurable in
            # the demo (serve p99 4.1-4.7 ms either way, learned ranker on) and cost the
            # lists freshness (p99 680-930 ms against 650-680 ms). The feature thread,
            # which the lists wait for less, stays lowered.
            system.start_processor()
            sys.setswitchinterval(0.001)
        # A processor-only process still answers /healthz and /v1/stats on its port, for
        # liveness probes and operators.
        app = system.app() if role in ("api", "all") else system.ops_app()
        # Everything loaded so far (FastAPI, pandas, Feast, ...) lives as long as the
        # process: keep it out of the collector, so a full collection stays short.
        gc.freeze()
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    finally:
        system.close()


def worker_app() -> ASGIApp:
    """One API worker's app (`serve --workers N`), built from its parent's settings."""
    system = build_system(Config.model_validate_json(os.environ[WORKER_CONFIG_ENV]))
    gc.freeze()
    return system.app()
