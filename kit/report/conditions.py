"""What moved a launch-bound row: host and GPU conditions (CPU, card, clocks, power limit, launch probe) of several
runs of ONE configuration, one column per run, oldest first. "—": not recorded by the run; "not recorded": a result
from before the kit recorded it."""
from __future__ import annotations

from typing import Optional, Sequence

from core.results import BenchResult, GPUState
from kit.report.common import DASH, created_key, ms, pipe_table

NOT_RECORDED = "not recorded"
SHORT_ID = 8  # enough characters of a boot id or GPU uuid to tell two apart in a column


def _or_dash(value: object) -> str:
    return DASH if value is None else str(value)


def _short(value: Optional[str]) -> str:
    if not value:
        return DASH
    return value[:SHORT_ID + len("GPU-")] if value.startswith("GPU-") else value[:SHORT_ID]


def _start_end(start: Optional[GPUState], end: Optional[GPUState], field: str) -> str:
    """'start → end', one value when both agree, '—' for a side not read."""
    a, b = (None if state is None else getattr(state, field) for state in (start, end))
    if a is None and b is None:
        return DASH
    return f"{a:g}" if a == b else f"{DASH if a is None else f'{a:g}'} → {DASH if b is None else f'{b:g}'}"


ROWS = ("Created (UTC)", "Host CPU", "Logical CPUs", "Hostname", "Boot id", "GPU uuid",
        "SM clock, MHz (start → end)", "Memory clock, MHz (start → end)", "Power limit, W",
        "Empty-kernel launch, µs", "CUDA graph replay, µs", "TTFT median", "TPOT median")


def _column(r: BenchResult) -> list[str]:
    h, c = r.provenance.host, r.conditions
    host = [NOT_RECORDED] * 4 if h is None else [_or_dash(h.cpu_model), _or_dash(h.cpu_cores), _or_dash(h.hostname),
                                                 _short(h.boot_id)]
    uuid = r.provenance.gpu.uuid if r.provenance.gpu else None
    # NOT_RECORDED: made before the kit recorded the card's uuid (with the host)
    uuid_cell = NOT_RECORDED if uuid is None and h is None else _short(uuid)
    if c is None:
        gpu = [NOT_RECORDED] * 5
    else:
        probe = c.launch_probe
        gpu = [*(_start_end(c.gpu_start, c.gpu_end, f) for f in ("sm_clock_mhz", "mem_clock_mhz", "power_limit_w")),
               DASH if probe is None else f"{probe.empty_kernel_launch_us:.2f}",
               DASH if probe is None or probe.graph_replay_us is None else f"{probe.graph_replay_us:.2f}"]
    return [r.created_utc, *host, uuid_cell, *gpu, ms(r.summary.ttft_ms.median), ms(r.summary.tpot_ms.median)]


def conditions_table(results: Sequence[BenchResult]) -> str:
    """One column per run (oldest first, headed by its run id), one row per condition; see the module doc."""
    runs = sorted(results, key=lambda r: (created_key(r.created_utc), r.run_id))
    return pipe_table(["Run", *(f"`{r.run_id}`" for r in runs)], zip(ROWS, *map(_column, runs)))
