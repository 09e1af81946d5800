"""Runners: where the container-side scripts (bench/, profile/) execute: docker (the stack's pinned image), local
(an interpreter with the stack) or slurm (one sbatch job per step, which runs one of the other two on its node)."""
from kit.runners.base import RunnerOptions, Step, child_env
from kit.runners.docker import run_docker
from kit.runners.local import run_local

__all__ = ["RunnerOptions", "Step", "child_env", "run_step"]


def run_step(step: Step, opts: RunnerOptions) -> None:
    """Run one step with the chosen runner. Raises KitError with a clear message on failure."""
    (run_local if opts.runner == "local" else run_docker)(step, opts)
