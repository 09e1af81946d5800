"""`python -m kit COMMAND [options]`: what every nox session calls (host side). The workload is parsed and checked
once, before anything long starts; each step hands it to the container side as data (docs/design.md)."""
from __future__ import annotations

import argparse
import functools
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from kit import KIT_ROOT
from core.errors import KitError
from core.workload import Parser, WorkloadSpec, add_workload_args, specs_from_namespace
from kit.images import VLLM_STACKS, lock_main, resolve_ca_bundle, stack_title
from kit.wheelhouse import venv_main, wheelhouse_main
from kit.runners import RunnerOptions, Step, run_step
from kit.runners.docker import container_pytest_main
from kit.runners.slurm import add_slurm_args, node_main, run_slurm, slurm_options


def _runner_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, description=description)
    p.add_argument("--runner", choices=("docker", "local", "slurm"), default="docker",
                   help="docker: the stack's pinned image (default); local: this interpreter or --python; slurm: one "
                        "sbatch job per step (and GPU type), run on the node by --node-runner")
    p.add_argument("--python", help="local runner: interpreter with the stack (default: $KIT_LOCAL_PYTHON, else "
                                    ".venv-<stack>/ made by `nox -s venv -- <stack>`, else the current one)")
    p.add_argument("--results-dir", type=Path, default=KIT_ROOT / "results")
    p.add_argument("--reports-dir", type=Path, help=REPORTS_DIR_HELP)
    p.add_argument("--output-dir", type=Path, default=KIT_ROOT / "output", help="traces and logs (git-ignored)")
    p.add_argument("--ca-bundle", type=Path,
                   help="CA bundle for TLS-intercepting proxies, passed to image builds as a BuildKit secret")
    p.add_argument("--label", help="free-text provenance label stored in each result (e.g. 'reference run')")
    p.add_argument("--no-report", action="store_true", help="do not re-assemble reports/ after measuring")
    add_slurm_args(p)
    return p


REPORTS_DIR_HELP = ("default: next to the results folder: reports/ beside a folder named results (the repo's "
                    "results/ -> reports/), else <results-dir>-reports")


def reports_dir_for(results_dir: Path, reports_dir: Optional[Path]) -> Path:
    """Reports go next to the results they render, unless the user names a folder: the committed reports/ is
    rendered only from the committed results/."""
    if reports_dir is not None:
        return reports_dir
    results_dir = results_dir.resolve()
    name = "reports" if results_dir.name == "results" else f"{results_dir.name}-reports"
    return results_dir.parent / name


def _result_files(results_dir: Path) -> dict[str, tuple[int, int]]:
    """name -> (mtime, size) of the result files in results_dir: what a step wrote shows as a difference."""
    try:
        return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in results_dir.glob("*.json")}
    except OSError:
        return {}


def assemble(results_dir: Path, reports_dir: Path, prefix: str = "report:") -> None:
    from kit.report import assemble_reports  # matplotlib: only when a report is written

    for path in assemble_reports(results_dir, reports_dir):
        print(f"{prefix} wrote {path}", flush=True)


def cmd_report(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="nox -s report --",
                                description="Re-render reports/ from results/ and the published data.")
    p.add_argument("--results-dir", type=Path, default=KIT_ROOT / "results")
    p.add_argument("--reports-dir", type=Path, help=REPORTS_DIR_HELP)
    ns = p.parse_args(argv)
    assemble(ns.results_dir, reports_dir_for(ns.results_dir, ns.reports_dir))


BENCH = ("-m", "bench", "run", "--backend")


def plan(command: str, argv: list[str]) -> tuple[argparse.Namespace, list[Step]]:
    """The parsed runner options and the steps of a measuring command (bench-hf, bench-vllm, profile); the workload
    is checked here, once, before anything long starts. Raises KitError with one paragraph."""
    if command == "bench-vllm":
        p = _runner_parser("nox -s bench-vllm --", f"Week-1 TTFT/TPOT of {stack_title('vllm')} by default, "
                                                    "one row per quantization.")
        add_workload_args(p, vllm=True, quantization_default="awq,awq_marlin")
        p.add_argument("--vllm", choices=tuple(VLLM_STACKS), default="0.12",
                       help=f"vLLM stack: 0.12 ({stack_title('vllm')}, the study's; default) or 0.20 "
                            f"({stack_title('vllm-0.20')}, for the version comparison); results of the two never "
                            "share a cell")
    elif command == "profile":
        p = _runner_parser("nox -s profile-t4 --",
                           "Week-2 torch.profiler table of the transformers + autoawq path (cold, warm, decode step).")
        add_workload_args(p, profile=True)
    else:
        p = _runner_parser("nox -s bench-hf --", f"Week-1 TTFT/TPOT of {stack_title('hf')}.")
        add_workload_args(p)
    ns = p.parse_args([a for a in argv if a != "--"])  # `python -m kit bench-hf [runner opts] -- [workload]`
    specs = specs_from_namespace(ns, "vllm" if command == "bench-vllm" else "transformers")
    if command == "bench-vllm":
        return ns, [Step(VLLM_STACKS[ns.vllm], BENCH + ("vllm",), spec, f"vLLM {ns.vllm} ({spec.quantization}) bench")
                    for spec in specs]
    if command == "profile":
        return ns, [Step("hf", ("profile/run_profile.py",), spec, "torch.profiler of the transformers + autoawq path")
                    for spec in specs]
    return ns, [Step("hf", BENCH + ("transformers",), spec, "transformers + autoawq bench") for spec in specs]


def _measure(command: str, argv: list[str]) -> None:
    ns, steps = plan(command, argv)
    # Only a --ca-bundle given here is mounted into the containers; KIT_CA_BUNDLE reaches the image builds alone.
    opts = RunnerOptions(runner=ns.runner, python=ns.python, results_dir=ns.results_dir.resolve(),
                         output_dir=ns.output_dir.resolve(), label=ns.label,
                         ca_bundle=resolve_ca_bundle(ns.ca_bundle) if ns.ca_bundle else None)
    slurm_opts = slurm_options(ns)  # None unless --runner slurm (KitError for Slurm options without it)
    before = _result_files(opts.results_dir)
    try:
        if slurm_opts is not None:
            opts.runner = slurm_opts.node_runner
            run_slurm(command, steps, opts, slurm_opts)
        else:
            _run_here(command, steps, opts)
    finally:
        # Whatever finished is in the results folder: keep its reports in step, even after a failure or Ctrl-C.
        if not ns.no_report:
            reports_dir = reports_dir_for(opts.results_dir, ns.reports_dir)
            if _result_files(opts.results_dir) != before:
                assemble(opts.results_dir, reports_dir)
            else:
                print(f"report: no new result in {opts.results_dir}; {reports_dir} left as it was", flush=True)


def _run_here(command: str, steps: list[Step], opts: RunnerOptions) -> None:
    """The steps one after another on this machine (docker or local runner)."""
    failures: dict[str, list[str]] = {}  # message -> the steps that failed with it (a host-wide cause repeats)
    for i, step in enumerate(steps, 1):
        print(f"[{command}] step {i}/{len(steps)}: {step.description}", flush=True)
        try:
            run_step(step, opts)
        except KitError as e:
            # One row failing (e.g. awq_marlin refused on a T4) must not cost the others.
            if len(steps) == 1:
                raise
            seen = str(e) in failures
            failures.setdefault(str(e), []).append(step.description)
            print(f"[{command}] {step.description} failed" + (" for the same reason as above" if seen else f": {e}"),
                  file=sys.stderr, flush=True)
    if failures:
        raise KitError(failure_summary(failures, len(steps)))


def failure_summary(failures: dict[str, list[str]], n_steps: int) -> str:
    """Each distinct cause once, with the steps it stopped. Its paragraph was printed when it first happened, so
    here only its first sentence: a host-wide cause (no GPU) is explained once, not once per step and again."""
    failed = sum(len(names) for names in failures.values())
    head = f"{failed} of {n_steps} steps failed" + (" (the others' results were written)" if failed < n_steps else "")
    causes = [f"{'all' if len(names) == n_steps else ', '.join(names)}: "
              + message.split("\n", 1)[0].split(". ", 1)[0].rstrip(".") + "." for message, names in failures.items()]
    return f"{head}; each reason is explained above: " + " | ".join(causes)


# `nox -s demo`: the bench and the profiler through the local runner on the tiny synthetic checkpoint (made once into
# demo/cache/), then the reports from demo/results into demo/reports. The interpreter must have the hf stack (`nox -s
# venv -- hf`). Earlier demo results and reports are cleared first, so the report shows this run only; results/ and
# reports/ are never touched.
# Small enough for ~1 minute on 2 shared cores, with the kit's default prompt length.
DEMO_WORKLOAD = {"synthetic": "tiny", "device": "cpu", "input_len": 32, "output_len": 32, "warmup": 2, "iters": 5}
# One thread: the tiny model is overhead-bound, and several OpenMP threads on a shared CPU spin against
# each other (measured: ~13 ms/token with 1 thread vs 85-160 ms with 2 on a loaded 2-core machine).
DEMO_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def demo_parser() -> Parser:
    p = Parser(prog="nox -s demo --", description="`nox -s demo` / `python -m kit demo`: the whole pipeline on this "
                                                  "CPU, in under a minute, touching only demo/.")
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
    return [Step("hf", BENCH + ("transformers",), workload,
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
    assemble(results, reports, "[demo]")
    timings["report"] = time.perf_counter() - t0
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    timings["total"] = time.perf_counter() - t_all
    print(f"[demo] done in {timings['total']:.1f} s ({parts}); results in {results}, reports in {reports}", flush=True)
    return timings


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "report": cmd_report,
    **{command: functools.partial(_measure, command) for command in ("bench-hf", "bench-vllm", "profile")},
    "demo": run_demo,
    "lock": lock_main,
    "venv": venv_main,
    "wheelhouse": wheelhouse_main,
    "container-pytest": container_pytest_main,
    "step": node_main,  # internal: one step on this machine, what a `--runner slurm` job runs on its node
}


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m kit {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[0]](argv[1:])
    except KitError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: results already written are kept; nothing partial was written.", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in HOST_DEPENDENCIES:
            raise
        packages = HOST_DEPENDENCIES.values()
        print(f"\nerror: `python -m kit` needs the host-side packages {', '.join(packages)} (no torch), and this "
              f"interpreter ({sys.executable}) has no {e.name!r}. Run it through nox, which installs them into its own "
              "venv (`nox -s report`, `nox -s bench-hf` ...), or install them here: "
              f"`{sys.executable} -m pip install {' '.join(packages)}`.", file=sys.stderr)
        return 2
    return 0


# import name -> pyproject.toml's [project] dependency (a host test keeps the two lists equal).
HOST_DEPENDENCIES = {"pydantic": "pydantic", "tabulate": "tabulate", "matplotlib": "matplotlib", "PIL": "pillow"}
