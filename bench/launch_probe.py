"""Kernel-launch latency of this GPU (`python -m bench.launch_probe`: one JSON line), host wall time (METHOD).

At batch 1 a decode step is many small kernels, so how fast the host launches them moves the row as much as the
GPU does. `launch_probe_subprocess` runs it in a child interpreter (bench/roofline.run_child) and never raises.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Optional

from bench.roofline import run_child
from core.results import LaunchProbe

LAUNCHES, REPEATS, WARMUP_LAUNCHES = 1000, 5, 200
GRAPH_REPLAYS, GRAPH_WARMUP = 200, 20
METHOD = (f"child process; host wall time: torch.cuda._sleep(0) x{LAUNCHES} then one synchronize, per launch, "
          f"median of {REPEATS} repeats after {WARMUP_LAUNCHES} warm-up launches; one replay + synchronize of a "
          f"CUDA graph of a 1-element add_, median of {GRAPH_REPLAYS} after {GRAPH_WARMUP} warm-up replays")
TIMEOUT_S = 60


def empty_kernel_launch_us(torch) -> float:
    for _ in range(WARMUP_LAUNCHES):
        torch.cuda._sleep(0)
    torch.cuda.synchronize()
    per_launch = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(LAUNCHES):
            torch.cuda._sleep(0)
        torch.cuda.synchronize()
        per_launch.append((time.perf_counter() - start) / LAUNCHES * 1e6)
    return statistics.median(per_launch)


def graph_replay_us(torch) -> float:
    x = torch.zeros(1, device="cuda")
    side = torch.cuda.Stream()  # torch's docs: warm up on a side stream before capture
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            x.add_(1)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        x.add_(1)
    for _ in range(GRAPH_WARMUP):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(GRAPH_REPLAYS):
        start = time.perf_counter()
        graph.replay()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


def measure() -> dict:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible to torch")
    out = {"empty_kernel_launch_us": empty_kernel_launch_us(torch), "graph_replay_us": None, "method": METHOD,
           "notes": []}
    try:
        out["graph_replay_us"] = graph_replay_us(torch)
    except Exception as e:  # the launch number stands on its own
        out["notes"].append(f"CUDA graph replay not measured: {type(e).__name__}: {e}")
    return out


def parse_probe_output(stdout: str) -> tuple[LaunchProbe, list[str]]:
    """The child's last stdout line -> (LaunchProbe, notes). Raises ValueError on anything else."""
    lines = stdout.strip().splitlines()
    if not lines:
        raise ValueError("the probe printed nothing")
    data = json.loads(lines[-1])
    notes = list(data.pop("notes", []))
    return LaunchProbe.model_validate(data), notes


def launch_probe_subprocess(timeout: float = TIMEOUT_S) -> tuple[Optional[LaunchProbe], list[str]]:
    """(probe, notes) from a child on the same GPU (it inherits CUDA_VISIBLE_DEVICES), or (None, [why])."""
    stdout, why = run_child("bench.launch_probe", what="launch probe not taken", timeout=timeout)
    if stdout is None:
        return None, [why]
    try:
        return parse_probe_output(stdout)
    except ValueError as e:  # json.JSONDecodeError and pydantic's ValidationError are ValueErrors
        return None, [f"launch probe not taken: unreadable output ({e})"]


if __name__ == "__main__":
    print(json.dumps(measure()))
