"""`shopper serve` runs on jemalloc where the system has it (`shopper.allocator`): it
starts again in the same process, so a supervisor's PID stays right, and answers as
before; `SHOPPER_ALLOCATOR=python` leaves it as started."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from shopper.allocator import allocator_env
from tests.helpers import serving


@contextmanager
def serving_on(
    tmp_path: Path, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client, Path]]:
    env = {**allocator_env("auto", os.environ), "SHOPPER_DATA_DIR": str(tmp_path), **settings}
    log = tmp_path / "server.log"
    with serving(env, log) as (proc, http):
        yield proc, http, log


def loaded_jemalloc(pid: int) -> bool:
    return "libjemalloc" in Path(f"/proc/{pid}/maps").read_text()


def environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def test_serve_runs_on_jemalloc_in_the_process_it_was_started_as(tmp_path: Path) -> None:
    with serving_on(tmp_path) as (proc, http, log):
        assert loaded_jemalloc(proc.pid), log.read_text()[-4000:]
        page = http.get("/v1/recommendations", params={"user_id": "u1"})
        assert page.status_code == 200 and page.json()["source"] == "popular", page.text
        assert environment(proc.pid)["PYTHONMALLOC"] == "malloc"
        assert "memory allocator: jemalloc" in log.read_text()


def test_allocator_python_leaves_serve_on_cpythons_allocator(tmp_path: Path) -> None:
    with serving_on(tmp_path, SHOPPER_ALLOCATOR="python") as (proc, _, log):
        assert not loaded_jemalloc(proc.pid)
        assert "PYTHONMALLOC" not in environment(proc.pid)
        assert "memory allocator: as started" in log.read_text()
