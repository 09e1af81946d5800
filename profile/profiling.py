"""torch.profiler of one forward pass of the transformers + autoawq path (week 2), in three phases: cold (the
first prefill in a fresh process, Triton JIT included), warm (the same prefill after warm-up) and decode (one token
with that prefill's KV cache, after a warm-up step). Each keeps the table verbatim (the seed's format), its totals
lines, the top rows as data, a Chrome trace, and a diagnosis computed from those numbers.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.profiler import ProfilerActivity, profile

from bench.hf_backend import awq_kernel_state
from core.files import atomic_path
from core.results import ProfilePhase, ProfileRow

ROW_LIMIT = 10  # the seed's table
STORED_ROWS = 30  # rows kept as data: the table's 10 plus context for the diagnosis
AWQ_FUNCTION = "WQLinearMMFunction"
LINEARS_PER_LAYER = 7  # q, k, v, o, gate, up, down


def awq_path_from_events(event_names: set[str], module_state: str) -> str:
    """Name the path that actually ran, from the kernels the profiler saw."""
    if any("awq_gemm_kernel" in n for n in event_names):
        return "triton: awq_gemm_kernel (split_k_iters=8)"
    if any("awq_dequantize" in n for n in event_names):
        return "triton: awq_dequantize_kernel + matmul (batch x seq >= 1024)"
    if any("gemm_forward_cuda" in n or "dequantize_weights_cuda" in n for n in event_names):
        return "awq_ext (CUDA extension)"
    if module_state == "naive":
        return "naive: dequantize_gemm + torch.matmul"
    return f"{module_state} (no AWQ kernel seen in the profile)"


def timed(fn: Callable[[], object], device: str) -> float:
    """Wall time of fn in ms, with the device drained before both clock reads."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t0) * 1e3


def split_table(text: str) -> tuple[str, list[str]]:
    """key_averages().table() text -> (the dashed table block, the 'Self ... time total' lines)."""
    lines = text.rstrip("\n").split("\n")
    totals = [ln.strip() for ln in lines if ln.strip().startswith("Self ") and "time total:" in ln]
    table = [ln for ln in lines if ln.strip() not in totals]
    return "\n".join(table) + "\n", totals


def _row(avg, device: str) -> ProfileRow:
    gpu = device == "cuda"
    return ProfileRow(
        name=avg.key, calls=avg.count,
        self_cpu_us=float(avg.self_cpu_time_total), cpu_total_us=float(avg.cpu_time_total),
        self_device_us=float(avg.self_device_time_total) if gpu else None,
        device_total_us=float(avg.device_time_total) if gpu else None,
        cpu_mem_bytes=int(avg.cpu_memory_usage), self_cpu_mem_bytes=int(avg.self_cpu_memory_usage),
        device_mem_bytes=int(avg.device_memory_usage) if gpu else None,
        self_device_mem_bytes=int(avg.self_device_memory_usage) if gpu else None)


def diagnose(rows: list[ProfileRow], self_cpu_total_us: float, self_device_total_us: float,
             wall_ms: float, device: str, awq_path: str, num_layers: int) -> str:
    awq = next((r for r in rows if r.name == AWQ_FUNCTION), None)
    expected = f"{num_layers} layers x {LINEARS_PER_LAYER} = {num_layers * LINEARS_PER_LAYER} expected"
    calls = f"{awq.calls} AWQ linear calls ({expected})" if awq else "no AWQ linear calls seen"
    if device != "cuda":
        share = 100.0 * awq.cpu_total_us / self_cpu_total_us if awq and self_cpu_total_us else 0.0
        return (f"CPU run: no device timeline. AWQ linears {share:.0f}% of self CPU time; {calls}; "
                f"autoawq path: {awq_path}.")
    busy = 100.0 * (self_device_total_us / 1e3) / wall_ms if wall_ms else 0.0
    share = 100.0 * (awq.device_total_us or 0.0) / self_device_total_us if awq and self_device_total_us else 0.0
    host_share = 100.0 * awq.self_cpu_us / self_cpu_total_us if awq and self_cpu_total_us else 0.0
    verdict = "host-bound" if busy < 50.0 else "device-bound"
    return (f"{verdict}: GPU busy {busy:.0f}% of the forward's {wall_ms:.1f} ms wall time; "
            f"AWQ linears {share:.0f}% of CUDA time and {host_share:.0f}% of self CPU time; {calls}; "
            f"autoawq path: {awq_path}.")


def table_self_device_total_us(averages) -> float:
    """The 'Self CUDA time total' of the table, by torch's own rule: kernels counted once.

    An op's self device time repeats its kernels' (WQLinearMMFunction and awq_gemm_kernel both
    show the GEMM), so only device-side events (or legacy CPU events) are summed.
    """
    from torch.autograd import DeviceType

    return float(sum(a.self_device_time_total for a in averages
                     if (getattr(a, "is_legacy", False) if a.device_type == DeviceType.CPU
                         else not getattr(a, "is_user_annotation", False))))


def phase_from_profiler(prof, *, label: str, description: str, device: str, wall_ms: float,
                        trace_path: Optional[Path], num_layers: int) -> ProfilePhase:
    averages = prof.key_averages()
    # The seed sorts by self CUDA time; a CPU-only run has no device column to sort by.
    sort_by, attr = (("self_cuda_time_total", "self_device_time_total") if device == "cuda"
                     else ("self_cpu_time_total", "self_cpu_time_total"))
    table, totals = split_table(averages.table(sort_by=sort_by, row_limit=ROW_LIMIT))
    ordered = sorted(averages, key=lambda a: getattr(a, attr), reverse=True)
    rows = [_row(a, device) for a in ordered[:STORED_ROWS]]
    awq_avg = next((a for a in averages if a.key == AWQ_FUNCTION), None)
    if awq_avg is not None and all(r.name != AWQ_FUNCTION for r in rows):
        rows.append(_row(awq_avg, device))  # the diagnosis always needs it
    path = awq_path_from_events({a.key for a in averages}, awq_kernel_state())
    self_cpu = float(sum(a.self_cpu_time_total for a in averages))
    self_dev = table_self_device_total_us(averages) if device == "cuda" else 0.0
    if trace_path:  # a Chrome trace, via temp file + rename
        with atomic_path(trace_path) as tmp:
            prof.export_chrome_trace(str(tmp))
    return ProfilePhase(label=label, description=description, table=table, totals=totals, rows=rows, wall_ms=wall_ms,
                        # relative to KIT_OUTPUT_DIR, e.g. traces/<run>-cold.trace.json
                        trace_file=f"{trace_path.parent.name}/{trace_path.name}" if trace_path else None,
                        awq_kernel_path=path,
                        diagnosis=diagnose(rows, self_cpu, self_dev, wall_ms, device, path, num_layers))


def profile_prefill_and_decode(model, input_ids, device: str, *, warmup: int, trace_dir: Optional[Path],
                               run_id: str, num_layers: int,
                               on_step: Callable[[str], None] = lambda s: None) -> tuple[list[ProfilePhase], dict]:
    """Cold, warm and decode-step profiles, plus the profiler-overhead measurement.

    Must be the first forward of the process for 'cold' to mean cold.
    """
    phases = []
    n = input_ids.shape[1]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])

    def prefill():
        return model(input_ids=input_ids, use_cache=False)

    def profiled(label: str, fn: Callable[[], object], description: str) -> float:
        with profile(activities=activities, profile_memory=True) as prof:
            wall = timed(fn, device)
        phases.append(phase_from_profiler(prof, label=label, description=description, device=device, wall_ms=wall,
                                          trace_path=trace_dir / f"{run_id}-{label}.trace.json" if trace_dir else None,
                                          num_layers=num_layers))
        return wall

    with torch.inference_mode():
        on_step("cold prefill (first forward in this process)")
        profiled("cold", prefill, f"first prefill forward of {n} tokens in a fresh process")
        on_step(f"warm-up ({warmup} forwards)")
        for _ in range(warmup):
            timed(prefill, device)
        unprofiled = [timed(prefill, device) for _ in range(max(3, warmup))]
        on_step("warm prefill")
        wall = profiled("warm", prefill, f"prefill forward of {n} tokens after {warmup} warm-up forwards")
        median = statistics.median(unprofiled)
        overhead = {"unprofiled_warm_forward_ms_median": median, "unprofiled_warm_forward_ms_samples": unprofiled,
                    "profiled_warm_forward_ms": wall, "profiler_overhead_ratio": wall / median}

        on_step("decode step (one token with the KV cache)")
        out = model(input_ids=input_ids, use_cache=True)
        out = model(input_ids=out.logits[:, -1:].argmax(-1), past_key_values=out.past_key_values,
                    use_cache=True)  # warm the M=1 shape
        token, cache = out.logits[:, -1:].argmax(-1), out.past_key_values
        profiled("decode", lambda: model(input_ids=token, past_key_values=cache, use_cache=True),
                 f"one decode step at position {n + 1} with the KV cache, after one warm-up step")
    return phases, overhead
