"""Container-side tests: torch + transformers 4.51.3 + autoawq 0.2.9, CPU only.

They run inside the HF image (kit mounted read-only: everything is written under tmp_path) or in
any venv with that stack. A missing library skips with the reason, except with CI=true, where a
missing library is a failure: CI must run every one of these tests.

Fixtures:
    tiny_ckpt   a tiny synthetic AWQ checkpoint (bench/configs/tiny.json), generated once per session
    kit_env     environment for `python -m bench ...` subprocesses (results/cache dirs under tmp_path)
    run_bench   run `python -m bench ARGS` in a subprocess -> CompletedProcess
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The repo (kit, bench) and tests/support (ci_policy). Not tests/ itself: a conftest.py there would make
# pytest put tests/ on sys.path, and tests/vllm would then import as a namespace package called `vllm`.
for _p in (str(REPO_ROOT), str(REPO_ROOT / "tests" / "support")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ci_policy import skip_or_fail  # noqa: E402  (the suite conftest puts tests/support on sys.path)
STACK = ("torch", "transformers", "awq", "accelerate", "safetensors", "numpy")


def require(*modules: str) -> None:
    """Import the modules or skip (fail under CI=true) with the reason."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            msg = (f"{name} is not importable ({e}); the container suite needs the HF stack "
                   "(torch, transformers 4.51.3, autoawq 0.2.9): run it in the hf image or a venv from its lock")
            skip_or_fail(msg)


@pytest.fixture(scope="session")
def stack():
    import warnings

    require(*STACK)
    with warnings.catch_warnings(record=True):
        import awq  # noqa: F401  (its import-time deprecation banner)
    return True


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kit-cache")


@pytest.fixture(scope="session")
def tiny_ckpt(stack, session_cache) -> Path:
    """bench/configs/tiny.json generated the way `--synthetic tiny` does, into the session's KIT_CACHE_DIR."""
    from bench.synthetic import ensure_synthetic

    _name, path = ensure_synthetic("tiny", session_cache, seed=0, progress=False)
    return path


@pytest.fixture
def kit_env(tmp_path, session_cache) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        "KIT_RESULTS_DIR": str(tmp_path / "results"),
        "KIT_OUTPUT_DIR": str(tmp_path / "output"),
        "KIT_CACHE_DIR": str(session_cache),
        "KIT_RUNNER": "local",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "OMP_NUM_THREADS": "1",  # tiny model: one thread is fastest on a shared CPU
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("KIT_LABEL", None)
    return env


@pytest.fixture
def run_bench(kit_env):
    def run(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench", *args], cwd=str(REPO_ROOT), env=env or kit_env,
                              capture_output=True, text=True, timeout=timeout)

    return run
