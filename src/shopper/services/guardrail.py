"""The experiment's guardrail: a challenger significantly worse than the champion on the
configured metric, after enough sessions, is killed by a change of the flag file (its
share goes to the champion), logged, and recorded with its reason in the flag file's
change log, where `shopper experiment show` and `GET /v1/experiments` report it.

It runs beside the processors (a thread of the process that runs them), every
`guardrail_check_s`. Processor replicas each run one: a kill is idempotent (a variant
already at 0% is left alone), and each replica computes the same verdict from the same
shared outcomes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from shopper.domain.experiment import with_share
from shopper.domain.guardrail import GuardrailRule, guardrail_verdict
from shopper.ports.flags import FlagEditor

log = logging.getLogger(__name__)

GUARDRAIL = "guardrail"  # who the change log says made a guardrail's kill


class Guardrail:
    def __init__(
        self,
        flags: FlagEditor,
        report: Callable[[], dict[str, Any]],
        rule: GuardrailRule,
        every_s: float = 30.0,
    ) -> None:
        self._flags = flags
        self._report = report
        self.rule = rule
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.kills: list[dict[str, Any]] = []

    def check(self) -> dict[str, str]:
        """Kill every challenger the rule says to; returns variant -> reason of the kills
        this check made."""
        verdict = guardrail_verdict(self._report(), self.rule)
        if not verdict:
            return {}
        experiment = self._flags.read()
        killed = {}
        for variant, reason in verdict.items():
            routed = {v.name: v for v in experiment.variants}
            if variant not in routed or routed[variant].weight == 0:
                continue  # killed already (by another replica, or by hand)
            experiment = with_share(experiment, variant, 0)
            killed[variant] = reason
        if killed:
            self._flags.write(experiment)
            for variant, reason in killed.items():
                log.warning("guardrail killed variant %s: %s", variant, reason)
                self.kills.append(self._flags.record("kill", variant, reason, GUARDRAIL))
        return killed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shopper-guardrail", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.check()
            except Exception:  # the next check may succeed; lists never wait on it
                log.exception("guardrail check failed")
