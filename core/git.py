"""The kit checkout's commit, for provenance: declared by whoever started the kit, else read from git."""
from __future__ import annotations

import os
import subprocess
from typing import Optional

from core import ROOT


def kit_git_state() -> tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of the kit: KIT_GIT_COMMIT / KIT_GIT_DIRTY when whoever started the kit set them (a copy of
    the working tree, as a GPU machine receives, may carry a stale .git), else the checkout's; (None, None) outside
    git."""
    if commit := os.environ.get("KIT_GIT_COMMIT"):
        dirty = os.environ.get("KIT_GIT_DIRTY")
        return commit, None if dirty is None else dirty == "1"

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout

    try:
        return git("rev-parse", "HEAD").strip(), bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None
