"""The local runner's interpreter: made by one command (`nox -s venv -- hf`), found by default, and an interpreter
without the stack gets one paragraph that names that command.

Making the real .venv-hf (torch 2.9.1 and the rest of the hashed lock, several GB) is CI's job: .ci/run runs
`nox -s venv -- hf` and then a plain `nox -s demo`.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from kit import KIT_ROOT
from core.errors import KitError
from kit.runners import RunnerOptions


@pytest.fixture
def made_venv(tmp_path):
    """A checkout root holding .venv-hf/bin/python, as `nox -s venv -- hf` leaves it."""
    python = tmp_path / ".venv-hf" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    return tmp_path, python


def test_the_made_venv_is_the_default(made_venv, monkeypatch):
    from kit.runners.local import resolve_python

    root, python = made_venv
    monkeypatch.delenv("KIT_LOCAL_PYTHON", raising=False)
    assert resolve_python(RunnerOptions(runner="local"), "hf", root=root) == str(python)
    assert resolve_python(RunnerOptions(runner="local"), "vllm", root=root) == sys.executable  # no .venv-vllm
    monkeypatch.setenv("KIT_LOCAL_PYTHON", sys.executable)
    assert resolve_python(RunnerOptions(runner="local"), "hf", root=root) == sys.executable
    assert resolve_python(RunnerOptions(runner="local", python=str(python)), "hf", root=root) == str(python)


def test_an_interpreter_without_the_stack_is_told_the_one_command():
    """This venv has pydantic but no torch, transformers or autoawq."""
    from kit.runners.local import check_stack

    with pytest.raises(KitError) as e:
        check_stack(sys.executable, "hf", {})
    message = str(e.value)
    assert "lacks torch, transformers, awq" in message and "`nox -s venv -- hf`" in message
    assert "\n" not in message


@pytest.mark.parametrize("command", [["bench-hf", "--runner", "local"], ["profile", "--runner", "local"], ["demo"]])
def test_the_local_steps_say_so_before_running_anything(command, tmp_path):
    where = (["--demo-dir", str(tmp_path / "demo")] if command == ["demo"] else
             ["--results-dir", str(tmp_path / "results"), "--", "--synthetic", "tiny", "--device", "cpu"])
    r = subprocess.run([sys.executable, "-m", "kit", *command, "--python", sys.executable, *where],
                       cwd=KIT_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "`nox -s venv -- hf`" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert not list(tmp_path.rglob("*.json")), "nothing ran"
