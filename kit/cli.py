"""`python -m kit COMMAND [options]`: what every nox session calls.

Host side only. Runner options are parsed here; workload options (--model,
--input-len, ...) are checked by the container side's own parser
(bench/options.py, torch-free) before anything long starts, then passed through.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from kit import KIT_ROOT
from kit.errors import KitError
from kit.images import VLLM_STACKS, stack_title
from kit.runners import RunnerOptions, Step, run_step, wants_cpu

VLLM_QUANTIZATIONS = ("awq", "awq_marlin")


def _runner_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                epilog="Workload options (--model, --synthetic, --input-len, ...) are passed to "
                                       "the container side; `python -m bench run --help` lists them.")
    p.add_argument("--runner", choices=("docker", "local"), default="docker",
                   help="docker: the stack's pinned image (default); local: this interpreter or --python")
    p.add_argument("--python", help="local runner: interpreter with the stack (default: $KIT_LOCAL_PYTHON, else "
                                    ".venv-<stack>/ made by `nox -s venv -- <stack>`, else the current one)")
    p.add_argument("--results-dir", type=Path, default=KIT_ROOT / "results")
    p.add_argument("--reports-dir", type=Path, help=REPORTS_DIR_HELP)
    p.add_argument("--output-dir", type=Path, default=KIT_ROOT / "output", help="traces and logs (git-ignored)")
    p.add_argument("--ca-bundle", type=Path, help="CA bundle for TLS-intercepting proxies, passed to image builds as a BuildKit secret")
    p.add_argument("--label", help="free-text provenance label stored in each result (e.g. 'reference run')")
    p.add_argument("--no-report", action="store_true", help="do not re-assemble reports/ after measuring")
    return p


def _options(ns: argparse.Namespace) -> RunnerOptions:
    opts = RunnerOptions(runner=ns.runner, python=ns.python, results_dir=ns.results_dir.resolve(),
                         output_dir=ns.output_dir.resolve(), label=ns.label)
    if ns.ca_bundle:
        if not ns.ca_bundle.is_file():
            raise KitError(f"--ca-bundle {ns.ca_bundle}: no such file. Pass the PEM bundle your proxy's CA is in "
                           "(often /etc/ssl/certs/ca-certificates.crt).")
        opts.ca_bundle = ns.ca_bundle.resolve()
    return opts


def _check_workload_args(command: str, passthrough: list[str]) -> None:
    """Fail fast on bad workload options, before any image build or model load."""
    from bench.options import validate_passthrough  # torch-free by contract

    validate_passthrough(command, passthrough)


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


def assemble(results_dir: Path, reports_dir: Path) -> None:
    from kit.report import assemble_reports

    written = assemble_reports(results_dir, reports_dir)
    for path in written:
        print(f"report: wrote {path}")


# --------------------------------------------------------------------------- commands


def cmd_report(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="nox -s report --", description="Re-render reports/ from results/ and the published data.")
    p.add_argument("--results-dir", type=Path, default=KIT_ROOT / "results")
    p.add_argument("--reports-dir", type=Path, help=REPORTS_DIR_HELP)
    ns = p.parse_args(argv)
    assemble(ns.results_dir, reports_dir_for(ns.results_dir, ns.reports_dir))


def _measure(command: str, argv: list[str], steps_for: Callable[[argparse.Namespace, list[str]], list[Step]],
             parser: argparse.ArgumentParser) -> None:
    ns, passthrough = parser.parse_known_args(argv)
    passthrough = [a for a in passthrough if a != "--"]  # `python -m kit bench-hf [runner opts] -- [workload opts]`
    opts = _options(ns)
    _check_workload_args(command, passthrough)
    steps = steps_for(ns, passthrough)
    before = _result_files(opts.results_dir)
    failures: list[str] = []
    try:
        for i, step in enumerate(steps, 1):
            print(f"[{command}] step {i}/{len(steps)}: {step.description}", flush=True)
            try:
                run_step(step, opts)
            except KitError as e:
                # One row failing (e.g. awq_marlin refused on a T4) must not cost the others.
                if len(steps) == 1:
                    raise
                print(f"[{command}] {step.description} failed: {e}", file=sys.stderr, flush=True)
                failures.append(f"{step.description}: {e}")
        if failures:
            raise KitError(f"{len(failures)} of {len(steps)} steps failed (the others' results were written): "
                           + " | ".join(failures))
    finally:
        # Whatever finished is in the results folder: keep its reports in step, even after a failure or Ctrl-C.
        if not ns.no_report:
            reports_dir = reports_dir_for(opts.results_dir, ns.reports_dir)
            if _result_files(opts.results_dir) != before:
                assemble(opts.results_dir, reports_dir)
            else:
                print(f"report: no new result in {opts.results_dir}; {reports_dir} left as it was", flush=True)


def cmd_bench_hf(argv: list[str]) -> None:
    p = _runner_parser("nox -s bench-hf --", f"Week-1 TTFT/TPOT of {stack_title('hf')}.")
    _measure("bench-hf", argv, lambda ns, rest: [
        Step("hf", ("-m", "bench", "run", "--backend", "transformers", *rest), needs_gpu=not wants_cpu(rest),
             description="transformers + autoawq bench")], p)


def cmd_bench_vllm(argv: list[str]) -> None:
    p = _runner_parser("nox -s bench-vllm --", f"Week-1 TTFT/TPOT of {stack_title('vllm')} by default, "
                                                    "one row per quantization.")
    p.add_argument("--quantization", default=",".join(VLLM_QUANTIZATIONS),
                   help="comma-separated subset of awq,awq_marlin (default: both rows)")
    p.add_argument("--vllm", choices=tuple(VLLM_STACKS), default="0.12",
                   help=f"vLLM stack: 0.12 ({stack_title('vllm')}, the study's; default) or 0.20 "
                        f"({stack_title('vllm-0.20')}, for CUDA 13 hosts); results of the two never share a cell")

    def steps(ns: argparse.Namespace, rest: list[str]) -> list[Step]:
        qs = [q.strip() for q in ns.quantization.split(",") if q.strip()]
        bad = [q for q in qs if q not in VLLM_QUANTIZATIONS]
        if bad or not qs:
            raise KitError(f"--quantization {ns.quantization!r}: expected a comma-separated subset of "
                           f"{','.join(VLLM_QUANTIZATIONS)}.")
        stack = VLLM_STACKS[ns.vllm]
        return [Step(stack, ("-m", "bench", "run", "--backend", "vllm", "--quantization", q, *rest),
                     description=f"vLLM {ns.vllm} ({q}) bench") for q in qs]

    _measure("bench-vllm", argv, steps, p)


def cmd_profile(argv: list[str]) -> None:
    p = _runner_parser("nox -s profile-t4 --",
                       "Week-2 torch.profiler table of the transformers + autoawq path (cold, warm, decode step).")
    _measure("profile", argv, lambda ns, rest: [
        Step("hf", ("profile/run_profile.py", *rest), needs_gpu=not wants_cpu(rest),
             description="torch.profiler of the transformers + autoawq path")], p)


def cmd_demo(argv: list[str]) -> None:
    from kit.demo import run_demo

    run_demo(argv)


def cmd_lock(argv: list[str]) -> None:
    from kit.images import lock_main

    lock_main(argv)


def cmd_venv(argv: list[str]) -> None:
    from kit.local_env import venv_main

    venv_main(argv)


def cmd_container_pytest(argv: list[str]) -> None:
    from kit.container_pytest import container_pytest_main

    container_pytest_main(argv)


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "report": cmd_report,
    "bench-hf": cmd_bench_hf,
    "bench-vllm": cmd_bench_vllm,
    "profile": cmd_profile,
    "demo": cmd_demo,
    "lock": cmd_lock,
    "venv": cmd_venv,
    "container-pytest": cmd_container_pytest,
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
        print(f"\nerror: {missing_host_dependency(e.name)}", file=sys.stderr)
        return 2
    return 0


# import name -> pyproject.toml's [project] dependency (a host test keeps the two lists equal).
HOST_DEPENDENCIES = {"pydantic": "pydantic", "tabulate": "tabulate", "matplotlib": "matplotlib", "PIL": "pillow"}


def missing_host_dependency(module: str) -> str:
    packages = HOST_DEPENDENCIES.values()
    return (f"`python -m kit` needs the host-side packages {', '.join(packages)} (no torch), and this "
            f"interpreter ({sys.executable}) has no {module!r}. Run it through nox, which installs them into its own "
            "venv (`nox -s report`, `nox -s bench-hf` ...), or install them here: "
            f"`{sys.executable} -m pip install {' '.join(packages)}`.")
