"""tests/vllm: the vLLM backend's arguments against the real vLLM classes of each vLLM stack, on a CPU.

They run inside the vLLM image (`python -m pytest tests/vllm`, kit mounted read-only at /kit:
everything is written under pytest's tmp folders) or in any venv with vllm==0.12.0
(`python3 -m venv /opt/vllmenv && /opt/vllmenv/bin/pip install vllm==0.12.0 pytest`, then
`/opt/vllmenv/bin/python -m pytest tests/vllm`). No engine is started: that needs a GPU.

Without vllm the tests skip with the reason, except with CI=true, where that is a failure.

Fixtures:
    vllm_mod   the imported vllm package (or skip / fail as above)
    tiny_ckpt  a tiny synthetic AWQ checkpoint (bench/configs/tiny.json, marlin-friendly sizes)
               made by bench.synthetic, once per session
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The repo (kit, bench) and tests/support (ci_policy). Not tests/ itself: a conftest.py there would make
# pytest put tests/ on sys.path, and tests/vllm would then import as a namespace package called `vllm`.
for _p in (str(REPO_ROOT), str(REPO_ROOT / "tests" / "support")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ci_policy import skip_or_fail  # noqa: E402  (the suite conftest puts tests/support on sys.path)

# vLLM and Hugging Face write caches/config under $HOME; keep them out of the (possibly read-only,
# possibly unnamed-user) home and never reach for the network.
_SCRATCH = tempfile.mkdtemp(prefix="kit-vllm-tests-")
for _var, _sub in (("VLLM_CACHE_ROOT", "vllm-cache"), ("VLLM_CONFIG_ROOT", "vllm-config"), ("HF_HOME", "hf-home")):
    os.environ.setdefault(_var, os.path.join(_SCRATCH, _sub))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _require_vllm():
    try:
        return importlib.import_module("vllm")
    except ImportError as e:
        msg = (f"vllm is not importable ({e}); tests/vllm need vLLM: run them in a vLLM image "
               "(`nox -s tests-vllm` for 0.12.0, `nox -s tests-vllm-0.20` for 0.20.0) or in a venv made "
               "from a vLLM stack's lock (`nox -s venv -- vllm`, then KIT_STACK=vllm .venv-vllm/bin/python -m "
               "pytest tests/vllm)")
        skip_or_fail(msg)


@pytest.fixture(scope="session")
def vllm_mod():
    return _require_vllm()


@pytest.fixture(scope="session")
def tiny_ckpt(vllm_mod, tmp_path_factory) -> Path:
    """bench/configs/tiny.json generated the way `--synthetic tiny` does (hidden, heads x head_dim and
    intermediate sizes are multiples of 128, as marlin needs)."""
    from bench.synthetic import ensure_synthetic

    _name, path = ensure_synthetic("tiny", tmp_path_factory.mktemp("kit-cache"), seed=0, progress=False)
    return path
