"""Week-2 profiler: `python profile/run_profile.py [workload options]` (what `nox -s profile-t4` runs).

Profiles the workload's prefill (cold and warm) and one decode step (profiling.py), prints each table in the seed's
format and writes one ProfileResult JSON to $KIT_RESULTS_DIR. This folder is scripts, not a package: a
profile/__init__.py would shadow the standard library's `profile` module.
"""
from __future__ import annotations

import sys
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parent.parent
if str(KIT_ROOT) not in sys.path:  # bench/ and core/; Python puts this script's folder (profiling.py) there itself
    sys.path.insert(0, str(KIT_ROOT))

import os  # noqa: E402
import secrets  # noqa: E402
import tempfile  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

from core.workload import Parser, add_spec_argument, add_workload_args, parse_spec  # noqa: E402
from core.results import Backend, ProfileResult, result_filename, write_result  # noqa: E402


def _log(msg: str) -> None:
    print(f"[profile] {msg}", file=sys.stderr, flush=True)


def run(argv: list[str]) -> int:
    parser = Parser(prog="python profile/run_profile.py", description=__doc__.split("\n\n")[0])
    add_spec_argument(parser)
    add_workload_args(parser, profile=True)
    _, args = parse_spec(parser, argv, "transformers")
    if args.reuse_triton_cache:
        return profile_run(args, "reused (TRITON_CACHE_DIR as set)")
    # 'cold' means what a fresh machine sees (the published Colab T4 run): Triton compiles every kernel.
    # An on-disk cache left by an earlier run would hide that, so start from an empty one, removed afterwards
    # (also after an error or Ctrl-C).
    with tempfile.TemporaryDirectory(prefix="kit-triton-cold-", ignore_cleanup_errors=True) as cold:
        os.environ["TRITON_CACHE_DIR"] = cold
        return profile_run(args, "fresh, empty (JIT compilation included in the cold phase)")


def profile_run(args, triton_cache: str) -> int:
    import torch

    from bench.hf_backend import load_awq_model
    from bench.provenance import collect_provenance
    from bench.workload import build_workload, prompt_token_ids, resolve_device, resolve_model
    from profiling import profile_prefill_and_decode

    device = resolve_device(args.device)
    if device == "cpu":
        # Without a CUDA driver, kineto logs "ERROR ... gpuGetDeviceCount failed with code 35" when the profiler
        # starts: harmless on a CPU run (no device to trace), so its log is silenced there; GPU runs keep it.
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    resolved = resolve_model(args)
    workload = build_workload(args, resolved)
    prompt_ids = prompt_token_ids(resolved.config, args.input_len, args.seed, resolved.path)
    _log(f"loading {resolved.model_id} on {device}")
    model, info = load_awq_model(resolved, device)
    torch_device = "cuda" if device.startswith("cuda") else "cpu"
    input_ids = torch.tensor([prompt_ids], device=model.device)
    now = datetime.now(timezone.utc)
    run_id = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    trace_dir = None if args.no_trace else Path(os.environ.get("KIT_OUTPUT_DIR") or "output") / "traces"
    phases, overhead = profile_prefill_and_decode(
        model, input_ids, torch_device, warmup=args.warmup, trace_dir=trace_dir, run_id=run_id,
        num_layers=int(resolved.config.get("num_hidden_layers", 0)), on_step=_log)
    provenance = collect_provenance("hf", device)
    notes = [f"Profiler overhead on the warm prefill: profiled {overhead['profiled_warm_forward_ms']:.2f} ms vs "
             f"unprofiled median {overhead['unprofiled_warm_forward_ms_median']:.2f} ms "
             f"(x{overhead['profiler_overhead_ratio']:.2f})."]
    if resolved.source == "synthetic":
        notes.append(f"Synthetic weights (config {resolved.synthetic_config}): random int4 values, same shapes and "
                     "kernels.")
    if torch_device == "cpu":
        notes.append("CPU run: the table has CPU columns only and is sorted by self CPU time; not comparable with the "
                     "T4 table.")
    settings = {**{k: v for k, v in info.items() if k != "quantization_config"}, "grad_mode": "torch.inference_mode",
                "profiler_overhead": overhead, "activities": ["CPU", "CUDA"] if torch_device == "cuda" else ["CPU"],
                "profile_memory": True, "row_limit": 10, "triton_cache": triton_cache}
    backend = Backend(name="transformers", label="transformers", quantization="awq", dtype=info["dtype"],
                      device=torch_device, settings=settings)
    result = ProfileResult(run_id=run_id, created_utc=now.isoformat(timespec="seconds"), workload=workload,
                           backend=backend, phases=phases, provenance=provenance, notes=notes)
    path = write_result(result, Path(os.environ.get("KIT_RESULTS_DIR") or "results") / result_filename(result))
    line = f"- Device: {provenance.gpu.name}" if provenance.gpu else f"- Device: CPU ({provenance.platform})"
    for phase in phases:  # the seed's week-2 block: device line, the table verbatim, the totals as bullets
        print(f"\n## {phase.label}: {phase.description}\n{line}\n{phase.table}", end="")
        print("".join(f"- {total}\n" for total in phase.totals) + f"- Diagnosis: {phase.diagnosis}")
    _log(notes[0])
    _log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from bench.__main__ import report_errors

    raise SystemExit(report_errors(run, sys.argv[1:], "[profile] interrupted: no profile result was written."))
