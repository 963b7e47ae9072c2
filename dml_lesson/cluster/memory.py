"""Each worker's peak memory while a block of code runs (notebook 00: a dataset larger than a worker's memory,
reduced block by block)."""

from __future__ import annotations

import threading

from distributed import Client

from ..core.settings import bounded
from .client import get_client, worker_info


class PeakMemory:
    """Context manager measuring each worker's peak resident memory while the block runs (notebook 00).

    Each worker samples its own process every 10 ms in a background thread, so short peaks are caught.
    After the block, ``peaks`` maps worker address to peak bytes and ``limits`` to the memory limit.
    """

    def __init__(self, client: Client | None = None) -> None:
        self.client = client or get_client()
        self.peaks: dict[str, int] = {}
        self.limits: dict[str, int] = {}

    def __enter__(self) -> PeakMemory:
        bounded("starting the memory samplers", self.client.run, _start_sampler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.peaks = bounded("reading the memory samplers", self.client.run, _stop_sampler)
        info = worker_info(self.client)
        self.limits = {addr: info[addr]["memory_limit"] for addr in self.peaks}


def _start_sampler() -> None:
    import psutil

    proc, state = psutil.Process(), {"peak": 0, "run": True}

    def sample() -> None:
        while state["run"]:
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            threading.Event().wait(0.01)

    state["thread"] = threading.Thread(target=sample, daemon=True)
    state["thread"].start()
    globals()["_sampler_state"] = state


def _stop_sampler() -> int:
    state = globals().pop("_sampler_state")
    state["run"] = False
    state["thread"].join()
    return int(state["peak"])
