"""In-memory flag client: the embedded mode's, and the tests' fake.

It evaluates with flagd's own core, fed the same JSON the flag file holds, so a shopper's
variant here is the one the file client (and a flagd daemon) gives them.
"""

from __future__ import annotations

import threading

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from shopper.adapters.flagd_format import VARIANT_FLAG, assignment_of, to_flagd
from shopper.domain.experiment import DEFAULT_EXPERIMENT, Experiment, check
from shopper.ports.flags import Assignment


class InMemoryFlagClient:
    def __init__(self, experiment: Experiment = DEFAULT_EXPERIMENT) -> None:
        self._core = FlagdCore()
        self._lock = threading.Lock()
        self._experiment = experiment
        self.set(experiment)

    def set(self, experiment: Experiment) -> None:
        """Serve `experiment` from now on (checked first: a bad one raises `ExperimentError`
        and the current one stays)."""
        check(experiment)
        with self._lock:
            self._core.set_flags(to_flagd(experiment))
            self._experiment = experiment

    def assign(self, subject: str) -> Assignment:
        champion = self._experiment.champion
        try:
            details = self._core.resolve_string_value(
                VARIANT_FLAG, champion.model, EvaluationContext(targeting_key=subject)
            )
        except Exception:  # flagd's errors are exceptions here: the champion answers
            return assignment_of(None, None, champion)
        return assignment_of(details.variant, details.value, champion)

    def experiment(self) -> Experiment:
        return self._experiment

    def close(self) -> None:
        pass
