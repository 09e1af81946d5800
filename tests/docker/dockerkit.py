"""Helpers shared by the Docker tests (imported by conftest.py and the test modules)."""
from __future__ import annotations

import os
import subprocess
import sys
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple, Optional


REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ci_policy import IN_CI as CI, skip_or_fail as unavailable  # noqa: E402,F401
# Figures worth seeing in the session summary (build times, sizes, bytes scanned): see conftest.py.
NOTES: list[str] = []
LOCAL_BASE = "kit-base:bookworm"




def kit_dirs(tmp_path: Path) -> list[str]:
    return ["--results-dir", str(tmp_path / "results"), "--output-dir", str(tmp_path / "output"),
            "--reports-dir", str(tmp_path / "reports")]


def run_kit(args: list[str], env: dict, *, python: str = sys.executable, timeout: float = 1200, cwd: Path = REPO,
            **kwargs) -> subprocess.CompletedProcess:
    """`python -m kit ARGS` from the repository root (or cwd), output captured (and echoed for the pytest log)."""
    r = subprocess.run([python, "-m", "kit", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout, **kwargs)
    print(f"$ python -m kit {' '.join(args)}  -> exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


# CPU workload for the tiny synthetic checkpoint: seconds, not minutes.
CPU_BENCH = ["--synthetic", "tiny", "--device", "cpu", "--warmup", "1", "--iters", "2", "--input-len", "16",
             "--output-len", "4"]



def world_dir(prefix: str) -> Path:
    """A 0755 folder another uid can reach (the caller chowns what that uid must write)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)
    return d


class NonRoot(NamedTuple):
    python: str
    uid: int
    gid: int
    docker_gid: Optional[int]
    kit: Path  # the user's own copy of the checkout


def copy_kit(dst: Path) -> Path:
    """A copy of the checkout without VCS, venvs, caches or outputs."""
    ignore = shutil.ignore_patterns(".git", ".nox", ".venv*", "__pycache__", "output", "results", "reports",
                                    "demo", ".pytest_cache")
    shutil.copytree(REPO, dst, ignore=ignore)
    return dst
