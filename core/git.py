"""The kit checkout's commit, for provenance: declared by whoever started the kit, else read from git."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

from core import ROOT


def git_state(root: Path = ROOT) -> tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of the kit checkout, or (None, None) outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None


def declared_git_state() -> Optional[tuple[str, Optional[bool]]]:
    """KIT_GIT_COMMIT / KIT_GIT_DIRTY set by whoever started the kit, or None.

    They win over the checkout's own .git: a copy of the working tree (a GPU machine that received the files,
    not the history) may carry a stale .git whose HEAD is not the code that runs.
    """
    commit = os.environ.get("KIT_GIT_COMMIT")
    if not commit:
        return None
    dirty = os.environ.get("KIT_GIT_DIRTY")
    return commit, None if dirty is None else dirty == "1"


def kit_git_state(root: Path = ROOT) -> tuple[Optional[str], Optional[bool]]:
    """The declared state when there is one, else the checkout's."""
    return declared_git_state() or git_state(root)
