"""The GPU's clocks and limits around the measured iterations (nvidia-ml-py), read, never set, and the kernel-launch
latency of this GPU (`python -m bench.conditions`: one JSON line), host wall time (METHOD).

At batch 1 the week-1 rows are launch- and host-bound: a decode step is many small kernels, so clocks and how fast
the host launches them move a row as much as the GPU does. The driver reads the launch probe (in a child interpreter,
bench/roofline.run_child) and the GPU state right before the first measured iteration and the state again after the
last. Nothing here may fail a bench: a failed query leaves its field None, an unreadable part a note. Only pynvml is
imported (lazily) in this process, never torch, so the backend's CUDA context is untouched.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, TypeVar

from bench.roofline import run_child
from core.results import GPUState, LaunchProbe, RunConditions
from core.rules import names_gpu, visible_entry

T = TypeVar("T")
NVML_PSTATE_UNKNOWN = 32  # nvmlDeviceGetPerformanceState's "unknown"
LAUNCHES, REPEATS, WARMUP_LAUNCHES = 1000, 5, 200
GRAPH_REPLAYS, GRAPH_WARMUP = 200, 20
METHOD = (f"child process; host wall time: torch.cuda._sleep(0) x{LAUNCHES} then one synchronize, per launch, "
          f"median of {REPEATS} repeats after {WARMUP_LAUNCHES} warm-up launches; one replay + synchronize of a "
          f"CUDA graph of a 1-element add_, median of {GRAPH_REPLAYS} after {GRAPH_WARMUP} warm-up replays")
TIMEOUT_S = 60


def nvml_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def nvml_session(nvml: Any = None) -> Iterator[Any]:
    """The pynvml module, initialised for the block; raises when nvidia-ml-py or NVML is unavailable."""
    if nvml is None:
        import pynvml as nvml  # nvidia-ml-py
    nvml.nvmlInit()
    try:
        yield nvml
    finally:
        nvml.nvmlShutdown()


def nvml_handle(nvml: Any, torch_index: int = 0, env: Optional[dict[str, str]] = None) -> Any:
    """NVML's handle of the GPU torch calls cuda:<torch_index>: its CUDA_VISIBLE_DEVICES entry, else that index
    (NVML numbers GPUs as nvidia-smi does; the Docker runner forwards CUDA_VISIBLE_DEVICES in PCI_BUS_ID order)."""
    env = os.environ if env is None else env
    entry = visible_entry(env.get("CUDA_VISIBLE_DEVICES"), torch_index)
    if entry is None:
        return nvml.nvmlDeviceGetHandleByIndex(torch_index)
    for i in range(nvml.nvmlDeviceGetCount()):  # the host preflight's rule, on NVML's numbering
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        if names_gpu(entry, i, nvml_text(nvml.nvmlDeviceGetUUID(handle))):
            return handle
    raise LookupError(f"CUDA_VISIBLE_DEVICES entry {entry!r} names no GPU for cuda:{torch_index} that NVML lists")


def _guarded(read: Callable[[], T]) -> Optional[T]:
    """One query's value, or None when it fails: a GPU or driver without that counter must not fail the bench."""
    try:
        return read()
    except Exception:
        return None


def read_gpu_state(nvml: Any, handle: Any) -> GPUState:
    """Every field of GPUState from an initialised NVML: MHz, watts (NVML reports milliwatts), °C, P-state."""
    return GPUState(
        sm_clock_mhz=_guarded(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))),
        mem_clock_mhz=_guarded(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM))),
        power_limit_w=_guarded(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000),
        power_draw_w=_guarded(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000),
        temperature_c=_guarded(lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))),
        pstate=_guarded(lambda: None if (p := int(nvml.nvmlDeviceGetPerformanceState(handle))) == NVML_PSTATE_UNKNOWN
                        else p),
    )


def gpu_state_or_why(index: int = 0, nvml: Any = None) -> tuple[Optional[GPUState], Optional[str]]:
    """(state, None), or (None, why) when nvidia-ml-py, NVML or the GPU's handle is unavailable."""
    try:
        with nvml_session(nvml) as session:
            return read_gpu_state(session, nvml_handle(session, index)), None
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"


class ConditionsRecorder:
    """RunConditions from the scenario loop's hooks: `before` (launch probe, GPU state), `after` (GPU state)."""

    def __init__(self, index: int = 0, nvml: Any = None,
                 probe: Optional[Callable[[], tuple[Any, list[str]]]] = None):
        self.index, self.nvml = index, nvml
        self.probe = probe or launch_probe_subprocess
        self.conditions = RunConditions()

    def before(self) -> None:
        try:
            self.conditions.launch_probe, notes = self.probe()
            self.conditions.notes.extend(notes)
        except Exception as e:  # a probe that misbehaves is a missing number, not a failed bench
            self.conditions.notes.append(f"launch probe not taken: {type(e).__name__}: {e}")
        self.conditions.gpu_start = self._state("start")

    def after(self) -> None:
        self.conditions.gpu_end = self._state("end")

    def _state(self, when: str) -> Optional[GPUState]:
        state, why = gpu_state_or_why(self.index, self.nvml)
        if state is None:
            self.conditions.notes.append(f"GPU state at the {when} not read (nvidia-ml-py): {why}")
        return state


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
    stdout, why = run_child("bench.conditions", what="launch probe not taken", timeout=timeout)
    if stdout is None:
        return None, [why]
    try:
        return parse_probe_output(stdout)
    except ValueError as e:  # json.JSONDecodeError and pydantic's ValidationError are ValueErrors
        return None, [f"launch probe not taken: unreadable output ({e})"]


if __name__ == "__main__":
    print(json.dumps(measure()))
