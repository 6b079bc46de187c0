"""One contract for every FlagClient: in memory (flagd's core), and OpenFeature's flagd
provider on a flag file and on a flagd daemon's sync service (a fake daemon over real gRPC:
`tests/fixtures/flagd_sync.py`). Then what only the file client has (a file that is
missing, unreadable or garbage, the provider's own domain), and what only the daemon
client has (a daemon not up yet, or gone away and back).

The file and daemon clients run with their production settings (the file polled every
second), so the pick-up times here are the ones a ramp or a kill takes in service."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openfeature import api
from scipy.stats import binom

from shopper.adapter_wiring import flag_client
from shopper.adapters.flagd_daemon import FlagdDaemonSource
from shopper.adapters.flagd_format import write_flag_file
from shopper.adapters.memory_flags import InMemoryFlagClient
from shopper.adapters.openfeature_flags import POLL_MS, OpenFeatureFlagClient
from shopper.config import load_config
from shopper.domain.experiment import (
    BASELINE,
    DEFAULT_EXPERIMENT,
    PROMOTED,
    Experiment,
    ExperimentError,
    Variant,
    with_share,
)
from shopper.ports.flags import Assignment, FlagClient
from tests.fixtures.flagd_sync import FakeFlagd

PICK_UP_S = 5.0  # the promise: a changed definition serves within this
SETTLE_S = 2.5 * POLL_MS / 1000  # long enough for the file client to have seen a change
DAEMON_SETTLE_S = 1.0  # the daemon pushes a change: it arrives in milliseconds
SHOPPERS = [f"user-{i}" for i in range(10_000)]

CHAMPION = Variant("champion", PROMOTED, 98)
CHALLENGER = Variant("challenger", BASELINE, 2)
SPLIT = Experiment((CHAMPION, CHALLENGER))
SHADOWED = Experiment((CHAMPION, CHALLENGER), (Variant("shadow", "v3"),))


@dataclass
class Harness:
    client: FlagClient
    change: Callable[[Experiment], None]  # put a definition in force (at once or soon)
    spoil: Callable[[], object]  # offer a definition that cannot be served
    reopen: Callable[[], FlagClient]  # another process's client on the same definition
    settle_s: float  # how long a change may take to arrive


Make = Callable[[Experiment], Harness]


@pytest.fixture
def closing() -> Iterator[list[FlagClient]]:
    clients: list[FlagClient] = []
    yield clients
    for client in clients:
        client.close()


def memory_harness(experiment: Experiment, clients: list[FlagClient]) -> Harness:
    client = InMemoryFlagClient(experiment)

    def spoil() -> None:
        with pytest.raises(ExperimentError):
            client.set(Experiment((Variant("champion", PROMOTED, 50),)))

    def reopen() -> FlagClient:
        return InMemoryFlagClient(client.experiment())

    return Harness(client, client.set, spoil, reopen, 0.0)


def file_harness(path: Path, experiment: Experiment, clients: list[FlagClient]) -> Harness:
    write_flag_file(path, experiment)

    def reopen() -> FlagClient:
        clients.append(OpenFeatureFlagClient(path))
        return clients[-1]

    return Harness(
        reopen(),
        lambda e: write_flag_file(path, e),
        lambda: path.write_text('{"flags": '),
        reopen,
        SETTLE_S,
    )


def daemon_harness(
    daemon: FakeFlagd, data_dir: Path, experiment: Experiment, clients: list[FlagClient]
) -> Harness:
    daemon.serve_experiment(experiment)

    def reopen() -> FlagClient:  # switched to the daemon by configuration alone
        clients.append(flag_client(load_config({}, data_dir=data_dir, flags_url=daemon.url)))
        return clients[-1]

    return Harness(
        reopen(),
        daemon.serve_experiment,
        lambda: daemon.serve('{"flags": '),
        reopen,
        DAEMON_SETTLE_S,
    )


@pytest.fixture(params=["memory", "file", "flagd"])
def make(request: pytest.FixtureRequest, tmp_path: Path, closing: list[FlagClient]) -> Make:
    if request.param == "memory":
        return lambda experiment: memory_harness(experiment, closing)
    if request.param == "flagd":
        daemon = request.getfixturevalue("flagd")
        return lambda experiment: daemon_harness(daemon, tmp_path, experiment, closing)
    return lambda experiment: file_harness(tmp_path / "flags.json", experiment, closing)


def assignments(client: FlagClient, subjects: list[str] = SHOPPERS) -> list[Assignment]:
    return [client.assign(s) for s in subjects]


def wait_for(condition: Callable[[], bool], timeout_s: float = PICK_UP_S) -> float:
    """Seconds until `condition` held; fails after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_shopper_keeps_their_variant_on_every_read_and_in_every_process(make: Make) -> None:
    flags = make(with_share(SPLIT, "challenger", 50))
    first = assignments(flags.client, SHOPPERS[:500])
    assert set(first) == {Assignment("champion", PROMOTED), Assignment("challenger", BASELINE)}
    for _ in range(20):
        assert assignments(flags.client, SHOPPERS[:500]) == first
    assert assignments(flags.reopen(), SHOPPERS[:500]) == first


@pytest.mark.parametrize("percent", [2, 10, 50])
def test_the_challengers_share_of_10000_shoppers_is_within_the_binomial_999_interval(
    make: Make, percent: int
) -> None:
    flags = make(with_share(SPLIT, "challenger", percent))
    counts = Counter(a.variant for a in assignments(flags.client))
    low, high = binom.interval(0.999, len(SHOPPERS), percent / 100)
    assert low <= counts["challenger"] <= high, counts
    assert counts["champion"] + counts["challenger"] == len(SHOPPERS)


def test_a_killed_variant_gets_nobody(make: Make) -> None:
    three = Experiment((CHAMPION, Variant("killed", "v1", 0), CHALLENGER))
    flags = make(three)
    counts = Counter(a.variant for a in assignments(flags.client))
    assert counts["killed"] == 0
    assert set(counts) == {"champion", "challenger"}
    assert flags.client.experiment().variant("killed").weight == 0


def test_a_shadow_is_never_assigned(make: Make) -> None:
    flags = make(with_share(SHADOWED, "challenger", 50))
    assert "shadow" not in {a.variant for a in assignments(flags.client)}
    assert "v3" not in {a.model for a in assignments(flags.client)}
    assert flags.client.experiment().shadows == (Variant("shadow", "v3"),)


def test_a_changed_definition_is_served_within_5_s_and_a_ramp_keeps_its_challengers(
    make: Make,
) -> None:
    flags = make(SPLIT)
    before = assignments(flags.client, SHOPPERS[:2000])  # and cached, for the file client
    ramped = with_share(SPLIT, "challenger", 50)
    expected = assignments(InMemoryFlagClient(ramped), SHOPPERS[:2000])
    assert expected != before
    flags.change(ramped)
    took = wait_for(
        lambda: (
            flags.client.experiment() == ramped
            and assignments(flags.client, SHOPPERS[:2000]) == expected
        )
    )
    assert took < PICK_UP_S
    # The challenger's range grows into the champion's: who had it keeps it.
    assert all(a == e for a, e in zip(before, expected, strict=True) if a.variant == "challenger")


def test_a_kill_moves_the_variants_shoppers_to_the_champion(make: Make) -> None:
    flags = make(with_share(SPLIT, "challenger", 50))
    assert assignments(flags.client, SHOPPERS[:300]).count(Assignment("champion", PROMOTED)) < 300
    flags.change(with_share(SPLIT, "challenger", 0))
    wait_for(
        lambda: set(assignments(flags.client, SHOPPERS[:300])) == {Assignment("champion", PROMOTED)}
    )


def test_a_definition_that_cannot_be_served_leaves_the_last_good_one_serving(make: Make) -> None:
    flags = make(with_share(SHADOWED, "challenger", 30))
    before = assignments(flags.client, SHOPPERS[:1000])
    flags.spoil()
    time.sleep(flags.settle_s)
    assert assignments(flags.client, SHOPPERS[:1000]) == before
    assert flags.client.experiment() == with_share(SHADOWED, "challenger", 30)


def test_every_client_assigns_every_shopper_alike(
    tmp_path: Path, closing: list[FlagClient], flagd: FakeFlagd
) -> None:
    three = Experiment(
        (Variant("champion", PROMOTED, 90), Variant("a", "v1", 0), Variant("b", BASELINE, 10)),
        (Variant("shadow", "v3"),),
    )
    file = file_harness(tmp_path / "flags.json", three, closing).client
    daemon = daemon_harness(flagd, tmp_path, three, closing).client
    ids = SHOPPERS[:2000] + [f"s:{i:08x}" for i in range(0, 2_000_000, 1000)]
    expected = assignments(InMemoryFlagClient(three), ids)
    assert {a.variant for a in expected} == {"champion", "b"}
    assert assignments(file, ids) == expected
    assert assignments(daemon, ids) == expected


# What only the flag file client has.


def test_no_flag_file_is_the_champion_of_the_default_and_logs_nothing(
    tmp_path: Path, closing: list[FlagClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="openfeature")
    closing.append(OpenFeatureFlagClient(tmp_path / "flags.json"))
    time.sleep(SETTLE_S)
    assert closing[0].experiment() == DEFAULT_EXPERIMENT
    assert set(assignments(closing[0], SHOPPERS[:100])) == {Assignment("champion", PROMOTED)}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not (tmp_path / "flags.json").exists()  # nothing created


def test_a_flag_file_that_appears_later_is_served_within_5_s(
    tmp_path: Path, closing: list[FlagClient]
) -> None:
    closing.append(OpenFeatureFlagClient(tmp_path / "flags.json"))
    assignments(closing[0], SHOPPERS[:500])
    write_flag_file(tmp_path / "flags.json", with_share(SPLIT, "challenger", 50))
    wait_for(lambda: Assignment("challenger", BASELINE) in assignments(closing[0], SHOPPERS[:500]))


@pytest.mark.parametrize(
    "spoiled",
    [b'{"flags": ', b"\xff\xfe garbage", b"{}", b'{"flags": {"shopper-variant": 1}}', b"dir"],
    ids=["cut-short", "not-utf8", "no-flags", "not-flagd", "a-directory"],
)
def test_the_champion_answers_while_the_file_is_unreadable_then_the_fixed_file_serves(
    tmp_path: Path,
    closing: list[FlagClient],
    caplog: pytest.LogCaptureFixture,
    spoiled: bytes,
) -> None:
    path = tmp_path / "flags.json"
    if spoiled == b"dir":
        path.mkdir()
    else:
        path.write_bytes(spoiled)
    closing.append(OpenFeatureFlagClient(path))
    time.sleep(SETTLE_S)  # the provider's watcher polls it a few times meanwhile
    assert set(assignments(closing[0], SHOPPERS[:500])) == {Assignment("champion", PROMOTED)}
    assert closing[0].experiment() == DEFAULT_EXPERIMENT
    # Each complaint of flagd's watcher at most once, not once a poll, and no traceback.
    complaints = [r for r in caplog.records if r.name == "openfeature.contrib"]
    assert all(n == 1 for n in Counter(r.getMessage() for r in complaints).values())
    assert all(r.exc_info is None for r in complaints)
    if spoiled == b"dir":
        path.rmdir()
    write_flag_file(path, with_share(SPLIT, "challenger", 50))
    wait_for(lambda: Assignment("challenger", BASELINE) in assignments(closing[0], SHOPPERS[:500]))


def test_a_deleted_flag_file_leaves_the_last_good_definition_serving(
    tmp_path: Path, closing: list[FlagClient]
) -> None:
    path = tmp_path / "flags.json"
    flags = file_harness(path, with_share(SPLIT, "challenger", 50), closing)
    before = assignments(flags.client, SHOPPERS[:500])
    path.unlink()
    time.sleep(SETTLE_S)
    assert assignments(flags.client, SHOPPERS[:500]) == before
    assert flags.client.experiment() == with_share(SPLIT, "challenger", 50)


def test_two_clients_in_one_process_keep_their_own_flags_and_the_default_provider_is_untouched(
    tmp_path: Path, closing: list[FlagClient]
) -> None:
    everyone = Experiment((Variant("champion", PROMOTED, 0), Variant("new", "v7", 100)))
    write_flag_file(tmp_path / "a.json", SPLIT)
    write_flag_file(tmp_path / "b.json", everyone)
    closing += [
        OpenFeatureFlagClient(tmp_path / "a.json"),
        OpenFeatureFlagClient(tmp_path / "b.json"),
    ]
    assert Assignment("new", "v7") not in assignments(closing[0], SHOPPERS[:500])
    assert set(assignments(closing[1], SHOPPERS[:500])) == {Assignment("new", "v7")}
    assert api.get_client().get_string_value("shopper-variant", "unset") == "unset"


def test_closed_clients_leave_no_file_watcher_running(tmp_path: Path) -> None:
    write_flag_file(tmp_path / "flags.json", SPLIT)
    clients = [OpenFeatureFlagClient(tmp_path / "flags.json") for _ in range(3)]
    for client in clients:
        client.close()

    def watchers() -> int:
        return sum(t.name == "FlagdFileWatcherWorkerThread" for t in threading.enumerate())

    wait_for(lambda: watchers() == 0, timeout_s=3 * POLL_MS / 1000)


def test_closing_twice_is_harmless_and_a_closed_client_still_answers(tmp_path: Path) -> None:
    write_flag_file(tmp_path / "flags.json", SPLIT)
    client = OpenFeatureFlagClient(tmp_path / "flags.json")
    client.close()
    client.close()
    assert client.assign("user-1").model in (PROMOTED, BASELINE)


# What only the flagd daemon client has.


def uncached_daemon_client(daemon: FakeFlagd, **settings: int) -> OpenFeatureFlagClient:
    """Every `assign` an evaluation: what the provider answers, not what was cached."""
    return OpenFeatureFlagClient(
        FlagdDaemonSource(daemon.host, daemon.port, **settings), cache_size=0
    )


def test_a_daemon_gone_away_leaves_the_last_definition_serving_and_its_return_is_served(
    flagd: FakeFlagd, closing: list[FlagClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    served = with_share(SHADOWED, "challenger", 30)
    flagd.serve_experiment(served)
    closing.append(uncached_daemon_client(flagd, grace_s=1))
    client = closing[0]
    before = assignments(client, SHOPPERS[:1000])
    flagd.stop()
    # The provider finds the stream gone, fails to reconnect (STALE), then gives up its
    # grace (ERROR): evaluation goes on, on the flags it last synced.
    wait_for(lambda: any("unavailable" in r.getMessage() for r in caplog.records))
    time.sleep(2.0)
    assert assignments(client, SHOPPERS[:1000]) == before
    assert assignments(client, SHOPPERS[1000:3000]) == assignments(
        InMemoryFlagClient(served), SHOPPERS[1000:3000]
    )
    assert client.experiment() == served
    ours = [r for r in caplog.records if r.name.startswith("shopper.")]
    assert all(n == 1 for n in Counter(r.getMessage() for r in ours).values()), ours

    ramped = with_share(SHADOWED, "challenger", 60)
    flagd.serve_experiment(ramped)  # changed while away: the stream catches up on return
    flagd.start()
    expected = assignments(InMemoryFlagClient(ramped), SHOPPERS[:1000])
    wait_for(
        lambda: client.experiment() == ramped and assignments(client, SHOPPERS[:1000]) == expected
    )
    assert any("loaded again" in r.getMessage() for r in caplog.records)


def test_a_daemon_not_up_yet_means_the_champion_then_its_flags_once_it_is(
    closing: list[FlagClient],
) -> None:
    flagd = FakeFlagd()
    flagd.start()  # for a free port of its own
    flagd.stop()
    flagd.serve_experiment(with_share(SPLIT, "challenger", 50))
    closing.append(uncached_daemon_client(flagd, deadline_ms=300))
    assert closing[0].experiment() == DEFAULT_EXPERIMENT
    assert set(assignments(closing[0], SHOPPERS[:500])) == {Assignment("champion", PROMOTED)}
    flagd.start()
    try:
        wait_for(lambda: closing[0].experiment() == with_share(SPLIT, "challenger", 50))
        assert Assignment("challenger", BASELINE) in assignments(closing[0], SHOPPERS[:500])
    finally:
        flagd.stop()


def test_closed_daemon_clients_leave_no_sync_stream_open(flagd: FakeFlagd) -> None:
    clients = [uncached_daemon_client(flagd) for _ in range(3)]
    assert flagd.streams == 3
    for client in clients:
        client.close()
    wait_for(lambda: flagd.streams == 0, timeout_s=3.0)
