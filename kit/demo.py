"""`nox -s demo` / `python -m kit demo`: the whole pipeline on this CPU, in under a minute, touching only demo/.

    1. bench    python -m bench run --backend transformers --synthetic tiny --device cpu ...
                (the tiny synthetic AWQ checkpoint is generated once into demo/cache/ and reused)
    2. profile  python profile/run_profile.py (same workload), when the profiler exists
    3. report   kit.report.assemble_reports(demo/results -> demo/reports)

Both steps run through the LOCAL runner (kit/runners/local.py) with the interpreter given by
--python, else $KIT_LOCAL_PYTHON, else .venv-hf/ (made once by `nox -s venv -- hf` from the hashed
locks), else this one: it needs torch, transformers 4.51.3 and autoawq 0.2.9, and one without them
gets a paragraph naming that command.
Everything is written under the git-ignored demo/ folder (demo/results, demo/reports,
demo/output, demo/cache); results/ and reports/ are never touched. Earlier demo results and
reports are cleared first, so the demo report shows this run only.

Options after `nox -s demo --`: --python PATH, --demo-dir DIR, and workload options (defaults
below; `python -m bench run --help` lists them all).

Host side: no torch here.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

from kit import KIT_ROOT
from kit.errors import KitError
from kit.runners import RunnerOptions, Step, run_step

# Small enough for ~1 minute on 2 shared cores, with the kit's default prompt length.
DEMO_WORKLOAD = {"--synthetic": "tiny", "--device": "cpu", "--input-len": "32", "--output-len": "32",
                 "--warmup": "2", "--iters": "5"}
# One thread: the tiny model is overhead-bound, and several OpenMP threads on a shared CPU spin against
# each other (measured: ~13 ms/token with 1 thread vs 85-160 ms with 2 on a loaded 2-core machine).
DEMO_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
PROFILER = KIT_ROOT / "profile" / "run_profile.py"


def workload_argv(overrides: list[str]) -> list[str]:
    """The demo's workload options, with the user's overrides (`--output-len 16`, `--output-len=16`) winning."""
    given = {a.split("=", 1)[0] for a in overrides if a.startswith("--")}
    argv: list[str] = []
    for key, value in DEMO_WORKLOAD.items():
        if key not in given and not (key == "--synthetic" and "--model" in given):
            argv += [key, value]
    return argv + list(overrides)


def demo_steps(workload: list[str], profiler: Path = PROFILER) -> list[Step]:
    steps = [Step("hf", ("-m", "bench", "run", "--backend", "transformers", *workload), needs_gpu=False,
                  description="bench: transformers + autoawq on CPU (tiny synthetic checkpoint)")]
    if profiler.is_file():
        steps.append(Step("hf", (str(profiler.relative_to(KIT_ROOT)), *workload), needs_gpu=False,
                          description="profile: torch.profiler of the same model on CPU"))
    return steps


def _clear(folder: Path) -> None:
    """Remove earlier demo outputs (files only ever written by the demo)."""
    if folder.is_dir():
        shutil.rmtree(folder)


def run_demo(argv: list[str], *, profiler: Optional[Path] = None) -> dict[str, float]:
    p = argparse.ArgumentParser(prog="nox -s demo --", description=__doc__.split("\n\n")[0])
    p.add_argument("--python", help="interpreter with the HF stack (default: $KIT_LOCAL_PYTHON, else .venv-hf/, else this one)")
    p.add_argument("--demo-dir", type=Path, default=KIT_ROOT / "demo", help="default: demo/ (git-ignored)")
    ns, rest = p.parse_known_args(argv)
    workload = workload_argv(rest)

    from bench.options import validate_passthrough  # torch-free

    validate_passthrough("demo", workload)
    demo = ns.demo_dir.resolve()
    for forbidden in (KIT_ROOT / "results", KIT_ROOT / "reports"):
        if demo == forbidden.resolve() or forbidden.resolve() in demo.parents:
            raise KitError(f"--demo-dir {demo} lies inside {forbidden}; the demo never writes there. Pick another "
                           "folder (default demo/).")
    results, reports = demo / "results", demo / "reports"
    _clear(results)
    _clear(reports)
    opts = RunnerOptions(runner="local", python=ns.python, results_dir=results, output_dir=demo / "output",
                         cache_dir=demo / "cache", label="demo: CPU, tiny synthetic checkpoint",
                         extra_env=dict(DEMO_ENV))
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    steps = demo_steps(workload, profiler or PROFILER)
    for i, step in enumerate(steps, 1):
        print(f"[demo] step {i}/{len(steps) + 1}: {step.description}", flush=True)
        t0 = time.perf_counter()
        run_step(step, opts)
        timings[step.description.split(":")[0]] = time.perf_counter() - t0
    if len(steps) == 1:
        print("[demo] profile/run_profile.py not found: profiler step skipped", flush=True)
    print(f"[demo] step {len(steps) + 1}/{len(steps) + 1}: report", flush=True)
    t0 = time.perf_counter()
    from kit.report import assemble_reports

    for path in assemble_reports(results, reports):
        print(f"[demo] wrote {path}", flush=True)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    print("[demo] done in {total:.1f} s ({parts}); results in {results}, reports in {reports}".format(
        total=timings["total"], parts=", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total"),
        results=results, reports=reports), flush=True)
    return timings


if __name__ == "__main__":  # pragma: no cover
    try:
        run_demo(sys.argv[1:])
    except KitError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
