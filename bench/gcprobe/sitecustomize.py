"""Loaded by the Python servers under test (``PYTHONPATH=bench/gcprobe``) when
``BENCH_GC_LOG`` is set: appends every garbage-collector pause of 1 ms or more to that
file as ``<epoch s> <generation> <ms>``. Costs two clock reads per collection."""

import gc
import os
import time

_path = os.environ.get("BENCH_GC_LOG")
if _path:
    _log = open(f"{_path}.{os.getpid()}", "a", buffering=1)
    _start = [0.0]

    def _probe(phase: str, info: dict) -> None:
        if phase == "start":
            _start[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - _start[0]) * 1000
        if ms >= 1.0:
            _log.write(f"{time.time():.3f} {info['generation']} {ms:.1f}\n")

    gc.callbacks.append(_probe)
