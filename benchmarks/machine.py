"""What else is running on this machine: the benchmarks print it before and after they measure, so that a ratio
taken while another process shared the 2 cores is not trusted (step_time.py, stragglers.py)."""

from __future__ import annotations

import os
import time


def busy_cores(seconds: float = 1.0) -> str:
    """Cores busy over ``seconds`` from /proc/stat (Linux): other processes competing with the benchmark."""
    def sample() -> list[int]:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    try:
        a = sample()
        time.sleep(seconds)
        d = [y - x for x, y in zip(a, sample())]
    except OSError:
        return "unknown (no /proc/stat)"
    return f"{(1 - (d[3] + d[4]) / sum(d)) * (os.cpu_count() or 1):.2f}"
