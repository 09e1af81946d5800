"""Runners: where the container-side scripts (bench/, profile/) execute.

- ``docker``: inside the stack's pinned image, kit mounted read-only (kit/runners/docker.py);
- ``local``: the current interpreter, or one given with ``--python`` (a venv made from the stack's lock; the Colab
  path) (kit/runners/local.py);
- ``slurm``: one sbatch job per step (and GPU type), which runs the kit on a node of the cluster, and there the
  step with the docker or the local runner (kit/runners/slurm.py).
"""
from kit.runners.base import RunnerOptions, Stack, Step, child_env
from kit.runners.docker import run_docker
from kit.runners.local import run_local

__all__ = ["RunnerOptions", "Stack", "Step", "child_env", "run_step"]


def run_step(step: Step, opts: RunnerOptions) -> None:
    """Run one step with the chosen runner. Raises KitError with a clear message on failure."""
    (run_local if opts.runner == "local" else run_docker)(step, opts)
