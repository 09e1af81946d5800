"""Local runner: the current interpreter or one given with --python (e.g. a venv built from a stack's lock)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from kit import KIT_ROOT
from kit.errors import KitError
from kit.runners import RunnerOptions, Step, child_env


def resolve_python(opts: RunnerOptions) -> str:
    python = opts.python or os.environ.get("KIT_LOCAL_PYTHON") or sys.executable
    found = shutil.which(python) if os.sep not in python else (python if os.path.exists(python) else None)
    if not found:
        raise KitError(
            f"--runner local: the interpreter {python!r} does not exist. Pass --python PATH to a Python that has "
            "the stack installed (e.g. a venv made from images/hf/requirements.lock, see the README's Colab section)."
        )
    return found


def run_local(step: Step, opts: RunnerOptions) -> None:
    python = resolve_python(opts)
    for d in (opts.results_dir, opts.output_dir, opts.cache_dir):
        d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(child_env(opts, results_dir=str(opts.results_dir), output_dir=str(opts.output_dir),
                         cache_dir=str(opts.cache_dir), runner="local"))
    env["KIT_STACK"] = step.stack  # provenance compares the environment with images/<stack>/requirements.lock
    env["PYTHONPATH"] = os.pathsep.join([str(KIT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [python, *step.argv]
    proc = subprocess.Popen(cmd, cwd=KIT_ROOT, env=env)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        # The child got the same SIGINT from the terminal; give it time to report what finished.
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            rc = proc.wait()
        raise
    if rc != 0:
        raise KitError(
            f"{step.description or ' '.join(step.argv)} failed (exit code {rc}) under {python}. "
            "Its own message is printed above; nothing incomplete was written to the results folder."
        )
