"""shopper's benchmarks: `make bench` (python -m benchmarks). Medians and ratios, measured
side by side in one run, since the machines are shared and noisy."""
