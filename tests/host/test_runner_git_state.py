"""The commit a result records: the one the caller declares, else the checkout's own .git."""
from __future__ import annotations

import subprocess
from pathlib import Path

from kit.runners import RunnerOptions, child_env


def _env(monkeypatch, tmp_path: Path) -> dict[str, str]:
    return child_env(RunnerOptions(results_dir=tmp_path), results_dir="r", output_dir="o", cache_dir="c",
                     runner="local")


def test_a_declared_commit_wins_over_a_stale_git_checkout(monkeypatch, tmp_path):
    # A GPU machine got a copy of the working tree with an old .git beside it: the caller knows better.
    monkeypatch.setenv("KIT_GIT_COMMIT", "7" * 40)
    monkeypatch.setenv("KIT_GIT_DIRTY", "0")
    env = _env(monkeypatch, tmp_path)
    assert env["KIT_GIT_COMMIT"] == "7" * 40 and env["KIT_GIT_DIRTY"] == "0"


def test_without_a_declaration_the_checkout_is_read(monkeypatch, tmp_path):
    monkeypatch.delenv("KIT_GIT_COMMIT", raising=False)
    monkeypatch.delenv("KIT_GIT_DIRTY", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    env = _env(monkeypatch, tmp_path)
    if head.returncode == 0:
        assert env["KIT_GIT_COMMIT"] == head.stdout.strip()
    else:  # an exported tree without .git records no commit rather than a made-up one
        assert "KIT_GIT_COMMIT" not in env
