"""The running experiment's report: each variant's definition (model, share, role) beside
what its sessions did (`domain.experiment_stats`), from the outcomes the processors
attribute in the stream (`domain.attribution`) and keep in the processor state."""

from __future__ import annotations

from typing import Any

from shopper.domain.experiment import DEFAULT_EXPERIMENT
from shopper.domain.experiment_stats import experiment_report
from shopper.ports.flags import FlagClient, FlagEditor
from shopper.ports.processor_state import ProcessorState

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
