"""`nox -s demo` / `python -m kit demo`: the whole pipeline on this CPU, in under a minute, touching only demo/.

The bench and the profiler run through the local runner on the tiny synthetic checkpoint (made
once into demo/cache/), then the reports are assembled from demo/results into demo/reports. The interpreter must
have the hf stack (`nox -s venv -- hf`). Earlier demo results and reports are cleared first, so the report shows
this run only; results/ and reports/ are never touched. Options: --python PATH, --demo-dir DIR, workload options.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from kit import KIT_ROOT
from core.errors import KitError
from core.workload import Parser, WorkloadSpec, add_workload_args, specs_from_namespace
from kit.runners import RunnerOptions, Step, run_step

# Small enough for ~1 minute on 2 shared cores, with the kit's default prompt length.
DEMO_WORKLOAD = {"synthetic": "tiny", "device": "cpu", "input_len": 32, "output_len": 32, "warmup": 2, "iters": 5}
# One thread: the tiny model is overhead-bound, and several OpenMP threads on a shared CPU spin against
# each other (measured: ~13 ms/token with 1 thread vs 85-160 ms with 2 on a loaded 2-core machine).
DEMO_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def demo_parser() -> Parser:
    p = Parser(prog="nox -s demo --", description=__doc__.split("\n\n")[0])
    p.add_argument("--python",
                   help="interpreter with the HF stack (default: $KIT_LOCAL_PYTHON, else .venv-hf/, else this one)")
    p.add_argument("--demo-dir", type=Path, default=KIT_ROOT / "demo", help="default: demo/ (git-ignored)")
    add_workload_args(p, profile=True)
    p.set_defaults(**{k: v for k, v in DEMO_WORKLOAD.items() if k != "synthetic"})
    return p


def demo_workload(ns) -> WorkloadSpec:
    """The demo's workload: the tiny synthetic checkpoint unless the user names a model or another config."""
    if ns.model is None and ns.synthetic is None:
        ns.synthetic = DEMO_WORKLOAD["synthetic"]
    (spec,) = specs_from_namespace(ns, "transformers")
    return spec


def demo_steps(workload: WorkloadSpec) -> list[Step]:
    return [Step("hf", ("-m", "bench", "run", "--backend", "transformers"), workload,
                 "bench: transformers + autoawq on CPU (tiny synthetic checkpoint)"),
            Step("hf", ("profile/run_profile.py",), workload, "profile: torch.profiler of the same model on CPU")]


def run_demo(argv: list[str]) -> dict[str, float]:
    ns = demo_parser().parse_args([a for a in argv if a != "--"])
    workload = demo_workload(ns)
    demo = ns.demo_dir.resolve()
    for forbidden in (KIT_ROOT / "results", KIT_ROOT / "reports"):
        if demo == forbidden.resolve() or forbidden.resolve() in demo.parents:
            raise KitError(f"--demo-dir {demo} lies inside {forbidden}; the demo never writes there. Pick another "
                           "folder (default demo/).")
    results, reports = demo / "results", demo / "reports"
    for folder in (results, reports):  # earlier demo outputs (only ever written by the demo): this run only
        if folder.is_dir():
            shutil.rmtree(folder)
    opts = RunnerOptions(runner="local", python=ns.python, results_dir=results, output_dir=demo / "output",
                         cache_dir=demo / "cache", label="demo: CPU, tiny synthetic checkpoint",
                         extra_env=dict(DEMO_ENV))
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    steps = demo_steps(workload)
    for i, step in enumerate(steps, 1):
        print(f"[demo] step {i}/{len(steps) + 1}: {step.description}", flush=True)
        t0 = time.perf_counter()
        run_step(step, opts)
        timings[step.description.split(":")[0]] = time.perf_counter() - t0
    print(f"[demo] step {len(steps) + 1}/{len(steps) + 1}: report", flush=True)
    t0 = time.perf_counter()
    from kit.report import assemble_reports  # matplotlib: only once the steps have run

    for path in assemble_reports(results, reports):
        print(f"[demo] wrote {path}", flush=True)
    timings["report"] = time.perf_counter() - t0
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    timings["total"] = time.perf_counter() - t_all
    print(f"[demo] done in {timings['total']:.1f} s ({parts}); results in {results}, reports in {reports}", flush=True)
    return timings
