"""shopper's benchmarks: `make bench` (python -m benchmarks). Medians and ratios, measured
side by side in one run, since the machines are shared and noisy.

The benchmarks never read the checkout's data folder (`.shopper`, where `make demo`,
`shopper experiment set` and the like leave keys, models and flags that would change what
is measured): importing this package points the default data folder at one of the run's
own, shared with the processes it starts and removed by the one that made it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from shopper import config as _config

_ENV = "BENCH_DATA_DIR"  # not SHOPPER_: the page servers start without those
if _ENV not in os.environ:
    os.environ[_ENV] = tempfile.mkdtemp(prefix="shopper-bench-")
    atexit.register(shutil.rmtree, os.environ[_ENV], ignore_errors=True)
_config.DATA_DIR = Path(os.environ[_ENV])
