"""What every runner shares: a `Step` (one container-side entry point for one stack), the `RunnerOptions`, and
the environment contract each runner passes to the child (`child_env`), so the container side never needs to
know which runner started it."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from core.errors import KitError
from core.git import kit_git_state
from core.workload import WorkloadSpec
from kit import KIT_ROOT

@dataclass(frozen=True)
class Step:
    stack: str  # one of kit.images.STACKS
    # the entry point after the interpreter, relative to the kit root, e.g. ("-m", "bench", "run", "--backend", "vllm")
    argv: tuple[str, ...]
    workload: Optional[WorkloadSpec] = None  # handed to the entry point as `--workload JSON`
    description: str = ""

    @property
    def needs_gpu(self) -> bool:
        return self.workload is not None and not self.workload.wants_cpu

    def to_json(self) -> str:
        """The step as data (`python -m kit step --step JSON` rebuilds it on a Slurm node)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Step":
        try:
            data = json.loads(text)
            return cls(stack=data["stack"], argv=tuple(data["argv"]), description=data.get("description", ""),
                       workload=WorkloadSpec(**data["workload"]) if data["workload"] is not None else None)
        except (ValueError, TypeError, KeyError) as e:
            raise KitError(f"--step: not a step written by the kit ({e!r}). `python -m kit step` is what a Slurm "
                           "job of `--runner slurm` runs; use the bench-hf, bench-vllm or profile commands.") from None

    def command(self, workload: Optional[WorkloadSpec] = None) -> tuple[str, ...]:
        """argv with the workload (or a runner's rewrite of it, e.g. container paths) as data."""
        workload = workload or self.workload
        return self.argv + (("--workload", workload.to_json()) if workload else ())


@dataclass
class RunnerOptions:
    runner: Literal["docker", "local"] = "docker"
    python: Optional[str] = None  # local runner: interpreter to use
    results_dir: Path = field(default_factory=lambda: KIT_ROOT / "results")
    output_dir: Path = field(default_factory=lambda: KIT_ROOT / "output")  # traces, logs (git-ignored)
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("KIT_CACHE_DIR",
                                                                        Path.home() / ".cache" / "awq-kit")))
    hf_home: Path = field(default_factory=lambda: Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")))
    ca_bundle: Optional[Path] = None  # docker builds behind TLS-intercepting proxies
    label: Optional[str] = None  # free-text provenance label, e.g. "reference run"
    extra_env: dict[str, str] = field(default_factory=dict)
    # docker runner, after Ctrl-C: seconds the container gets to stop after its SIGINT (then docker stop). In a
    # Slurm job being cancelled the kit has only the cluster's KillWait before SIGKILL: kit/runners/slurm.py sets less.
    interrupt_grace_s: float = 30.0


def child_env(opts: RunnerOptions, *, results_dir: str, output_dir: str, cache_dir: str,
              runner: str, image: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment contract between a runner and the container side.

    KIT_RESULTS_DIR  where result JSONs go
    KIT_OUTPUT_DIR   where traces / logs go (git-ignored)
    KIT_CACHE_DIR    synthetic checkpoints are generated here once and reused
    KIT_RUNNER       docker | local
    KIT_GIT_COMMIT / KIT_GIT_DIRTY   the kit checkout (the container has no .git)
    KIT_IMAGE_ID / KIT_IMAGE_TAG / KIT_LOCK_HASH   docker runner only
    KIT_LABEL        free-text provenance label
    KIT_STACK        the step's stack (set by each runner): provenance reads images/<stack>/requirements.lock
    """
    commit, dirty = kit_git_state()
    env = {"KIT_RESULTS_DIR": results_dir, "KIT_OUTPUT_DIR": output_dir, "KIT_CACHE_DIR": cache_dir,
           "KIT_RUNNER": runner, "PYTHONUNBUFFERED": "1"}
    if commit:
        env["KIT_GIT_COMMIT"] = commit
        env["KIT_GIT_DIRTY"] = "1" if dirty else "0"
    if opts.label:
        env["KIT_LABEL"] = opts.label
    return {**env, **(image or {}), **opts.extra_env}
