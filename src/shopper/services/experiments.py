"""The running experiment's report: each variant's definition (model, share, role) beside
what its sessions did (`domain.experiment_stats`), from the outcomes the processors
attribute in the stream (`domain.attribution`) and keep in the processor state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from shopper.domain.experiment import DEFAULT_EXPERIMENT
from shopper.domain.experiment_stats import experiment_report
from shopper.ports.flags import FlagClient, FlagEditor
from shopper.ports.processor_state import ProcessorState
from shopper.services.priority import lower_this_thread

log = logging.getLogger(__name__)

CHANGES_REPORTED = 20  # the last changes of the definition, in the report
EXPERIMENT_REPORT_S = 5.0  # a report is reused this long (its intervals resample sessions)


def experiment_report_of(
    flags: FlagClient | None, state: ProcessorState, editor: FlagEditor | None = None
) -> dict[str, Any]:
    """Per routed variant: model, weight, role, sessions and rates with intervals, each
    challenger against the champion; the shadows with their models (never served, so
    they have no sessions)."""
    experiment = flags.experiment() if flags is not None else DEFAULT_EXPERIMENT
    champion = experiment.champion.name
    report = experiment_report(state.outcomes(), [v.name for v in experiment.variants], champion)
    for entry, variant in zip(report["variants"], experiment.variants, strict=True):
        role = "champion" if variant.name == champion else "challenger"
        entry.update(model=variant.model, weight=variant.weight, role=role)
    report["shadows"] = [{"name": s.name, "model": s.model} for s in experiment.shadows]
    # Kills, ramps and settings, the guardrail's with its reasons.
    report["changes"] = editor.changes(CHANGES_REPORTED) if editor is not None else []
    return report


class ReportPublisher:
    """Computes the experiment report every `every_s` on a thread of a process that runs
    processors, and publishes it in the processor state, where API replicas read it: the
    report resamples every session (a tenth to half a second of CPU for 2,000 to 30,000
    sessions), which a process serving pages must not spend beside them."""

    def __init__(self, compute: Callable[[], dict[str, Any]], every_s: float) -> None:
        self._compute = compute
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shopper-report", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        lower_this_thread()  # background work: the process's own page reads, if any, first
        while not self._stop.wait(self._every_s):
            try:
                self._compute()
                self._failing = False
            except Exception:
                if not self._failing:  # once per outage, not every interval
                    log.exception("publishing the experiment report failed; trying again")
                self._failing = True
