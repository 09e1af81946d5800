"""The GPU's clocks and limits around the measured iterations (nvidia-ml-py), read, never set.

At batch 1 the week-1 rows are launch- and host-bound, so clocks move them. The driver reads the launch probe and the
GPU state right before the first measured iteration and the state again after the last. Nothing here may fail a
bench: a failed query leaves its field None, an unreadable part a note. Only pynvml is imported (lazily), never
torch, so the backend's CUDA context is untouched.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, TypeVar

from bench.launch_probe import launch_probe_subprocess
from core.results import GPUState, RunConditions
from core.rules import names_gpu, visible_entry

T = TypeVar("T")
NVML_PSTATE_UNKNOWN = 32  # nvmlDeviceGetPerformanceState's "unknown"


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

