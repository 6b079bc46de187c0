"""The processes a chaos scenario runs and breaks: a Redis of its own, the tansu broker,
`shopper serve --role api` and `--role processor`, each on a free port.

The shopper processes run under `jumped_clock.py`, reading their wall clock's offset from a
file, so a scenario can jump their clock while they run (monotonic time is left alone: a
wall clock jumps, a monotonic one never does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

import httpx
import redis

from shopper.services.runtime import free_port
from tests.fixtures.kafka import _wait_until_answering, tansu_path

START_TIMEOUT_S = 60.0
ADMIN_TOKEN = "chaos-admin-token-0123456789abcdef"
INGEST_KEY = "chaos-ingest-key-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]
JUMPED = [sys.executable, "-m", "tests.chaos.jumped_clock"]  # a clock the test can jump


class Service:
    """One child process, its output in a file (never a pipe that could fill up)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()

    def tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class RedisServer:
    """`redis-server` on a free port, nothing saved: a restart comes back empty."""

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        # Commands that hold Redis 10 ms or more (every page waits behind them), for the row.
        command += ["--slowlog-log-slower-than", "10000"]
        self.service = Service("redis", command, dict(os.environ), logs)

    def start(self) -> None:
        self.service.start()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, self.service.tail()
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        self.service.kill()

    def slow_commands(self) -> list[str]:
        """What Redis spent 10 ms or more on since the last call (its slow log)."""
        client = self.client()
        try:
            entries = client.slowlog_get(20)
            client.slowlog_reset()
        finally:
            client.close()
        return [
            f"{e['duration'] / 1000:.1f} ms {e['command'][:80]!r}"
            for e in entries  # type: ignore[union-attr]
        ]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)


class Broker:
    """tansu with memory storage: a restart comes back without topics, records or groups."""

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.address}"
        command = [str(tansu_path()), "broker", "--listener-url", url]
        command += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        self.service = Service("tansu", command, dict(os.environ), logs)

    def start(self) -> None:
        self.service.start()
        assert self.service.proc is not None
        with tempfile.TemporaryFile() as unused:
            _wait_until_answering(self.service.proc, unused, self.address, 15.0)

    def kill(self) -> None:
        self.service.kill()


class Shopper:
    """The API and the processor, as `shopper serve` runs them, sharing one environment."""

    def __init__(self, logs: Path, data: Path, redis_url: str, broker: str) -> None:
        self.logs = logs
        self.api_port = free_port()
        self.processor_port = free_port()
        self.clock_file = logs / "clock-offset"
        self.set_clock_offset(0)
        run = uuid.uuid4().hex[:8]
        self.prefix = f"chaos{run}:"
        self.env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "SHOPPER_DATA_DIR": str(data),
            "SHOPPER_STREAM_URL": f"kafka://{broker}",
            "SHOPPER_CACHE_URL": redis_url,
            "SHOPPER_REDIS_KEY_PREFIX": self.prefix,
            "SHOPPER_TOPIC_PREFIX": f"chaos{run}.",
            "SHOPPER_PARTITIONS": "2",
            "SHOPPER_GROUP_SESSION_TIMEOUT_S": "2",
            "SHOPPER_ADMIN_TOKEN": ADMIN_TOKEN,
            "SHOPPER_INGEST_KEY": INGEST_KEY,
            "PYTHONPATH": str(REPO),
            "CHAOS_CLOCK_FILE": str(self.clock_file),
        }
        serve = [*JUMPED, "shopper", "serve", "--role"]
        self.api = Service("api", [*serve, "api", "--port", str(self.api_port)], self.env, logs)
        self.processor = self._processor([*serve, "processor"])

    def _processor(self, command: list[str], name: str = "processor") -> Service:
        return Service(name, [*command, "--port", str(self.processor_port)], self.env, self.logs)

    def set_clock_offset(self, seconds: int) -> None:
        """The shopper processes' wall clock, this far from the real one."""
        self.clock_file.write_text(f"{seconds}\n")

    def start(self) -> None:
        self.api.start()
        self.processor.start()
        self.wait_healthy(self.api, self.api_port)
        self.wait_healthy(self.processor, self.processor_port)

    def restart_processor(self, slowdown: float | None = None) -> None:
        """A new processor (`slowdown`: benchmarks/slow_processor.py's, N times slower)."""
        self.processor.stop()
        if slowdown is None:
            command = [*JUMPED, "shopper", "serve", "--role", "processor"]
            self.processor = self._processor(command)
        else:
            command = [*JUMPED, "benchmarks.slow_processor"]
            command += ["--slowdown", str(slowdown)]
            self.processor = self._processor(command, "slow-processor")
        self.processor.start()
        self.wait_healthy(self.processor, self.processor_port)

    def wait_healthy(self, service: Service, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            while True:
                assert service.running(), service.tail()
                try:
                    if http.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{service.name} did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        self.api.stop()
        self.processor.stop()
