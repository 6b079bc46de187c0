"""The flag file as the guardrail edits it: the flagd definition and its change log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopper.adapters.flag_audit import recent_changes, record_change
from shopper.adapters.flagd_format import read_flag_file, write_flag_file
from shopper.domain.experiment import Experiment


class FlagFile:
    """`ports.flags.FlagEditor` on a flagd flag file and the log beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Experiment:
        return read_flag_file(self.path)

    def write(self, experiment: Experiment) -> None:
        write_flag_file(self.path, experiment)

    def record(self, action: str, variant: str, reason: str, by: str) -> dict[str, Any]:
        return record_change(self.path, action, variant, reason, by=by)

    def changes(self, last: int) -> list[dict[str, Any]]:
        return recent_changes(self.path, last)
