"""Local runner: the interpreter given with --python, else $KIT_LOCAL_PYTHON, else .venv-<stack>/ made by
`nox -s venv -- <stack>` from the stack's locks, else the current one. It must have the stack: checked first."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from kit import KIT_ROOT
from core.errors import KitError
from kit.wheelhouse import STACK_MODULES, make_command, venv_python
from kit.runners.base import RunnerOptions, Step, child_env


def resolve_python(opts: RunnerOptions, stack: str = "hf", root=KIT_ROOT) -> str:
    made = venv_python(stack, root)
    python = opts.python or os.environ.get("KIT_LOCAL_PYTHON") or (str(made) if made.exists() else sys.executable)
    found = shutil.which(python) if os.sep not in python else (python if os.path.exists(python) else None)
    if not found:
        raise KitError(
            f"--runner local: the interpreter {python!r} does not exist. Make one from the stack's locks with "
            f"`{make_command(stack)}` (then used by default), or pass --python PATH to a Python that has the stack."
        )
    return found


def check_stack(python: str, stack: str, env: dict[str, str]) -> None:
    # Which of the stack's modules the interpreter cannot find (found, not imported: a second, not torch's import).
    modules = STACK_MODULES.get(stack, ())
    probe = ("import importlib.util, sys; "
             "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))")
    r = subprocess.run([python, "-c", probe, *modules], capture_output=True, text=True, env=env, cwd=KIT_ROOT)
    missing = r.stdout.split() if r.returncode == 0 else list(modules)
    if missing:
        raise KitError(
            f"--runner local: {python} cannot run the {stack} steps, it lacks {', '.join(missing)}. Make the local "
            f"interpreter from the stack's hashed locks with one command, `{make_command(stack)}` (it creates "
            f".venv-{stack}/, which the local runner and `nox -s demo` then use by default), or pass --python PATH "
            "(or set KIT_LOCAL_PYTHON) to an interpreter that has the stack."
        )


def run_local(step: Step, opts: RunnerOptions) -> None:
    python = resolve_python(opts, step.stack)
    env = {**os.environ, **child_env(opts, results_dir=str(opts.results_dir), output_dir=str(opts.output_dir),
                                     cache_dir=str(opts.cache_dir), runner="local"),
           "KIT_STACK": step.stack}  # provenance compares the environment with images/<stack>/requirements.lock
    env["PYTHONPATH"] = os.pathsep.join([str(KIT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    check_stack(python, step.stack, env)
    for d in (opts.results_dir, opts.output_dir, opts.cache_dir):
        d.mkdir(parents=True, exist_ok=True)
    cmd = [python, *step.command()]
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
