"""Sample results built with the real pydantic models: for tests (tests/host/conftest.py), the report
timing benchmark (tools/bench_timing.py) and demos. Never written into results/ by the kit itself.

    make_bench_result(**overrides) -> BenchResult
    make_profile_result(**overrides) -> ProfileResult
    write_sample(result, folder) -> Path        (file name from core.results.result_filename)

Every value is derived from the arguments and the stacks' locks (library versions), so the same call gives the
same result (no clocks, no randomness), and a bench result agrees with itself (core.results.bench_inconsistencies):
its summary is computed from its samples after any `samples=` override; a `summary=` override is applied last
(to build contradictions on purpose). Runs of one machine and card, or of other stacks, come from the keyword
arguments of `run_context` (host, boot_id, gpu_uuid, versions, deviating), accepted by both factories. Keyword
arguments not listed below are deep-merged into the result's JSON form before validation, e.g.
``make_bench_result(workload={"input_len": 512}, provenance={"label": "reference run"})``.
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, Optional, Sequence

from core.locks import lock_versions
from core.results import BenchResult, ProfileResult, result_filename, summarize, write_result

_PUBLISHED_MEDIANS = {  # the study's numbers: realistic magnitudes for samples
    "vLLM (awq)": (51.78, 50.12),
    "vLLM (awq_marlin)": (7.51, 5.83),
    "transformers": (95.41, 62.05),
}
# backend -> (its image's stack, the libraries a sample records), at the versions of that stack's lock.
_STACKS = {
    "vllm": ("vllm", ("torch", "vllm", "transformers")),
    "transformers": ("hf", ("torch", "autoawq", "transformers", "triton")),
}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _backend(label: str, device: str) -> dict[str, Any]:
    if label.startswith("vLLM"):
        quant = "awq_marlin" if "marlin" in label else "awq"
        return {"name": "vllm", "label": label, "quantization": quant, "dtype": "float16", "device": device,
                "settings": {"enforce_eager": False, "enable_prefix_caching": False}}
    return {"name": "transformers", "label": label, "quantization": "awq", "dtype": "float16", "device": device,
            "settings": {"grad_mode": "inference_mode", "awq_kernel_path": "triton gemm"}}


def _provenance(backend_name: str, gpu: Optional[str]) -> dict[str, Any]:
    stack, names = _STACKS.get(backend_name, _STACKS["transformers"])
    locked = lock_versions(stack)
    libs = {name: locked[name] for name in names}
    return {
        "kit_commit": "0123456789abcdef0123456789abcdef01234567",
        "kit_dirty": False,
        "runner": "docker",
        "image_id": f"sha256:{'a' * 64}" if backend_name == "vllm" else f"sha256:{'b' * 64}",
        "image_tag": f"awq-kit/{'vllm' if backend_name == 'vllm' else 'hf'}:sample",
        "lock_hash": f"sha256:{'c' * 64}",
        "python": "3.12.3",
        "platform": "Linux-6.8.0-x86_64-with-glibc2.39",
        "libraries": libs,
        "pins": dict(libs),
        "deviations": [],
        "gpu": None if gpu is None else {"name": gpu, "memory_total_mib": 81920, "driver": "570.124.06",
                                        "cuda_runtime": "12.8", "compute_capability": "8.0"},
        "label": None,
    }


def run_context(provenance: dict[str, Any], *, host: Optional[str] = None, boot_id: Optional[str] = None,
                gpu_uuid: Optional[str] = None, versions: Optional[dict[str, str]] = None,
                deviating: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """The provenance with a host record (hostname, boot id: one lease), a GPU uuid, and library versions other than
    the lock's: `versions` are another lock's (installed and pinned, e.g. vLLM 0.20.0 with its torch); `deviating`
    are installed against the lock's pins (recorded as deviations, as the runner does for a stand-in torch)."""
    out = copy.deepcopy(provenance)
    if host is not None or boot_id is not None:
        out["host"] = {"hostname": host, "boot_id": boot_id}
    if gpu_uuid is not None and out.get("gpu"):
        out["gpu"]["uuid"] = gpu_uuid
    for name, version in (versions or {}).items():
        out["libraries"][name] = out["pins"][name] = version
    for name, version in (deviating or {}).items():
        out["libraries"][name] = version
        out["deviations"].append(f"{name} {version} (pinned {out['pins'].get(name, 'not pinned')})")
    return out


def _context_parts(*context: Any) -> list[str]:
    """What run_context changes, for the run id; nothing when nothing is set (older samples keep their ids)."""
    return [repr(context)] if any(c is not None for c in context) else []


def _run_id(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12]


def make_bench_result(*, label: str = "transformers", gpu: Optional[str] = "NVIDIA A100-SXM4-80GB",
                      ttft_ms: Optional[Sequence[float]] = None, tpot_ms: Optional[Sequence[float]] = None,
                      iterations: int = 5, input_len: int = 128, output_len: int = 8,
                      created_utc: str = "2026-01-01T00:00:00Z", run_id: Optional[str] = None,
                      roofline: bool | dict[str, Any] = True, scale: float = 1.0, host: Optional[str] = None,
                      boot_id: Optional[str] = None, gpu_uuid: Optional[str] = None,
                      versions: Optional[dict[str, str]] = None, deviating: Optional[dict[str, str]] = None,
                      **overrides: Any) -> BenchResult:
    """A valid week-1 result. gpu=None makes a CPU run. ttft_ms / tpot_ms: per-iteration samples
    (default: around the published medians times `scale`, with a small deterministic spread).
    roofline: False for none, True for the 8B model's bytes and a fixed bandwidth, a dict to override those.
    host, boot_id, gpu_uuid, versions, deviating: see run_context (e.g. versions={"vllm": "0.20.0", "torch":
    "2.11.0"} for vLLM 0.20.0's own stack, deviating={"torch": "2.11.0"} for a stand-in torch)."""
    base_ttft, base_tpot = _PUBLISHED_MEDIANS.get(label, (40.0, 20.0))
    spread = [1.0 + 0.01 * ((i * 7) % 5 - 2) for i in range(iterations)]
    ttft = list(ttft_ms) if ttft_ms is not None else [round(base_ttft * scale * f, 4) for f in spread]
    tpot = list(tpot_ms) if tpot_ms is not None else [round(base_tpot * scale * f, 4) for f in spread]
    n = len(ttft)
    itl = [[t] * (output_len - 1) for t in tpot]
    e2e = [a + b * (output_len - 1) for a, b in zip(ttft, tpot)]
    backend = _backend(label, "cpu" if gpu is None else "cuda")
    data: dict[str, Any] = {
        "run_id": run_id or _run_id("bench", label, gpu, created_utc, input_len, output_len,
                                    *_context_parts(host, boot_id, gpu_uuid, versions, deviating)),
        "created_utc": created_utc,
        "workload": {"model": "Qwen/Qwen3-8B-AWQ", "revision": None, "resolved_revision": None,
                     "model_source": "synthetic", "synthetic": True, "synthetic_config": "qwen3-8b-awq",
                     "input_len": input_len, "output_len": output_len, "batch_size": 1, "warmup": 2,
                     "iterations": n, "seed": 0},
        "backend": backend,
        "samples": {"ttft_ms": ttft, "tpot_ms": tpot, "e2e_ms": e2e, "itl_ms": itl},
        "provenance": run_context(_provenance(backend["name"], gpu), host=host, boot_id=boot_id, gpu_uuid=gpu_uuid,
                                  versions=versions, deviating=deviating),
        "roofline": None,
        "notes": [],
    }
    if roofline is not False:
        data["roofline"] = _deep_merge({
            "bytes_per_decode_step": 4_850_000_000,
            "bytes_breakdown": {"qweight": 3_473_000_000, "scales": 109_000_000, "qzeros": 27_000_000,
                                "lm_head": 1_245_000_000},
            "bandwidth_gb_s": 1600.0 if gpu else 40.0,
            "bandwidth_method": "device-to-device copy, read+write"}, roofline if isinstance(roofline, dict) else {})
    data["samples"] = _deep_merge(data["samples"], overrides.pop("samples", {}))
    data["summary"] = _summary_of(data["samples"])  # of the samples as overridden: the result agrees with itself
    return BenchResult.model_validate(_deep_merge(data, overrides))


def _summary_of(samples: dict[str, Any]) -> dict[str, Any]:
    gaps = [x for xs in samples["itl_ms"] for x in xs]
    return {"ttft_ms": summarize(samples["ttft_ms"]).model_dump(), "tpot_ms": summarize(samples["tpot_ms"]).model_dump(),
            "itl_ms": summarize(gaps or [0.0]).model_dump(), "e2e_ms": summarize(samples["e2e_ms"]).model_dump()}


# --------------------------------------------------------------------------- profiles


def _fmt_time(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


def _fmt_mem(b: int) -> str:
    for unit, size in (("Gb", 1024 ** 3), ("Mb", 1024 ** 2), ("Kb", 1024)):
        if abs(b) >= size:
            return f"{b / size:.2f} {unit}"
    return f"{b} b"


def format_profiler_table(rows: Sequence[dict[str, Any]], device: bool = True) -> tuple[str, list[str]]:
    """A key_averages().table()-shaped text (15 columns with device, 10 without) and its two totals lines."""
    heads = ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg"]
    if device:
        heads += ["Self CUDA", "Self CUDA %", "CUDA total", "CUDA time avg"]
    heads += ["CPU Mem", "Self CPU Mem"] + (["CUDA Mem", "Self CUDA Mem"] if device else []) + ["# of Calls"]
    widths = [55] + [12] * (len(heads) - 1)
    total_cpu = sum(r["self_cpu_us"] for r in rows) or 1.0
    total_dev = sum(r.get("self_device_us") or 0.0 for r in rows) or 1.0

    def line(cells: Sequence[str]) -> str:
        return "".join(c.rjust(w) + "  " for c, w in zip(cells, widths))

    sep = "".join("-" * w + "  " for w in widths)
    out = [sep, line(heads)]
    for r in rows:
        calls = r["calls"]
        cells = [r["name"][:52] + "..." if len(r["name"]) > 55 else r["name"],
                 f"{100 * r['self_cpu_us'] / total_cpu:.2f}%", _fmt_time(r["self_cpu_us"]),
                 f"{100 * r['cpu_total_us'] / total_cpu:.2f}%", _fmt_time(r["cpu_total_us"]),
                 _fmt_time(r["cpu_total_us"] / calls)]
        if device:
            cells += [_fmt_time(r["self_device_us"]), f"{100 * r['self_device_us'] / total_dev:.2f}%",
                      _fmt_time(r["device_total_us"]), _fmt_time(r["device_total_us"] / calls)]
        cells += [_fmt_mem(r.get("cpu_mem_bytes") or 0), _fmt_mem(r.get("self_cpu_mem_bytes") or 0)]
        if device:
            cells += [_fmt_mem(r.get("device_mem_bytes") or 0), _fmt_mem(r.get("self_device_mem_bytes") or 0)]
        cells.append(str(calls))
        out.append(line(cells))
    out.append(sep)
    totals = [f"Self CPU time total: {_fmt_time(total_cpu)}"]
    if device:
        totals.append(f"Self CUDA time total: {_fmt_time(total_dev)}")
    return "\n".join(out), totals


def _profile_rows(phase: str, device: bool, scale: float) -> list[dict[str, Any]]:
    k = {"cold": 40.0, "warm": 1.0, "decode": 0.05}[phase] * scale
    base = [
        ("WQLinearMMFunction", 252, 2_782_000.0 / 40, 101_457.0),
        ("awq_gemm_kernel", 252, 0.0, 101_457.0),
        ("aten::mm", 1, 123_695.0 / 40, 5_092.0),
        ("aten::mul", 472, 8_593.0, 2_602.0),
        ("aten::copy_", 401, 4_309.0, 2_155.0),
        ("aten::mean", 145, 2_959.0, 1_573.0),
    ]
    rows = []
    for name, calls, cpu, dev in base:
        row = {"name": name, "calls": calls, "self_cpu_us": round(cpu * k, 3), "cpu_total_us": round(cpu * k * 1.01, 3)}
        if device:
            row.update(self_device_us=round(dev * k, 3), device_total_us=round(dev * k * 1.01, 3),
                       device_mem_bytes=0, self_device_mem_bytes=0)
        row.update(cpu_mem_bytes=0, self_cpu_mem_bytes=0)
        rows.append(row)
    return rows


def make_profile_result(*, gpu: Optional[str] = "Tesla T4", phases: Sequence[str] = ("cold", "warm", "decode"),
                        input_len: int = 128, created_utc: str = "2026-01-01T00:00:00Z",
                        run_id: Optional[str] = None, scale: float = 1.0, host: Optional[str] = None,
                        boot_id: Optional[str] = None, gpu_uuid: Optional[str] = None,
                        versions: Optional[dict[str, str]] = None, deviating: Optional[dict[str, str]] = None,
                        **overrides: Any) -> ProfileResult:
    """A valid week-2 result with one profiled phase per name in `phases`. gpu=None makes a CPU run
    (no device columns, as torch.profiler prints on a CPU)."""
    device = gpu is not None
    descriptions = {"cold": "first forward pass of the prompt: Triton JIT included",
                    "warm": "second forward pass of the same prompt",
                    "decode": "one decode step at batch 1"}
    phase_dicts = []
    for name in phases:
        rows = _profile_rows(name, device, scale)
        table, totals = format_profiler_table(rows, device)
        phase_dicts.append({"label": name, "description": descriptions[name], "table": table, "totals": totals,
                            "rows": rows, "wall_ms": round(sum(r["self_cpu_us"] for r in rows) / 1e3, 3),
                            "trace_file": None,
                            "diagnosis": "WQLinearMMFunction + awq_gemm_kernel dominate device time: the Triton "
                                         "GEMM path (fewer than 1024 tokens)",
                            "awq_kernel_path": "triton gemm (split_k_iters=8)"})
    backend = _backend("transformers", "cuda" if device else "cpu")
    data: dict[str, Any] = {
        "run_id": run_id or _run_id("profile", gpu, created_utc, input_len, tuple(phases),
                                    *_context_parts(None, None, None, versions, deviating)),
        "created_utc": created_utc,
        "workload": {"model": "Qwen/Qwen3-8B-AWQ", "revision": None, "resolved_revision": None,
                     "model_source": "synthetic", "synthetic": True, "synthetic_config": "qwen3-8b-awq",
                     "input_len": input_len, "output_len": 1, "batch_size": 1, "warmup": 0, "iterations": 1,
                     "seed": 0},
        "backend": backend,
        "phases": phase_dicts,
        "provenance": run_context(_provenance("transformers", gpu), host=host, boot_id=boot_id, gpu_uuid=gpu_uuid,
                                  versions=versions, deviating=deviating),
        "notes": [],
    }
    return ProfileResult.model_validate(_deep_merge(data, overrides))


def write_sample(result: BenchResult | ProfileResult, folder: Path, name: Optional[str] = None) -> Path:
    return write_result(result, Path(folder) / (name or result_filename(result)))


def sample_set(folder: Path) -> list[Path]:
    """A realistic results folder: all three backends on an A100, two on an H200 (two transformers runs in one cell),
    a CPU run, and a T4 profile with three phases."""
    return [
        write_sample(make_bench_result(label="vLLM (awq)"), folder),
        write_sample(make_bench_result(label="vLLM (awq_marlin)", scale=1.05), folder),
        write_sample(make_bench_result(label="transformers", scale=0.97), folder),
        write_sample(make_bench_result(label="transformers", gpu="NVIDIA H200", scale=0.6), folder),
        write_sample(make_bench_result(label="transformers", gpu="NVIDIA H200", scale=0.55,
                                       created_utc="2026-01-02T00:00:00Z"), folder),
        write_sample(make_bench_result(label="vLLM (awq_marlin)", gpu="NVIDIA H200", scale=0.5), folder),
        write_sample(make_bench_result(label="transformers", gpu=None, scale=40.0, roofline=False), folder),
        write_sample(make_profile_result(), folder),
    ]
