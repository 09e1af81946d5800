"""Shared fixtures for host-side tests (no torch, no docker).

Result factories built with the real pydantic models (tests/support/samples.py):

    def test_x(make_bench_result, make_profile_result, write_result_file, tmp_path):
        r = make_bench_result(label="vLLM (awq)", gpu="NVIDIA H200", workload={"input_len": 512})
        path = write_result_file(r, tmp_path / "results")

`gpu=None` makes a CPU run; any other keyword is deep-merged into the result's JSON before validation.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The repo (kit, bench) and tests/support (ci_policy, samples). Not tests/ itself: a conftest.py there would make
# pytest put tests/ on sys.path, and tests/vllm would then import as a namespace package called `vllm`.
for _p in (str(REPO_ROOT), str(REPO_ROOT / "tests" / "support")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import samples  # noqa: E402
# CI=true: any skip in this suite is a failure (tests/support/ci_policy.py).
from ci_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402,F401


@pytest.fixture
def make_bench_result():
    """samples.make_bench_result(**overrides) -> BenchResult."""
    return samples.make_bench_result


@pytest.fixture
def make_profile_result():
    """samples.make_profile_result(**overrides) -> ProfileResult."""
    return samples.make_profile_result


@pytest.fixture
def write_result_file():
    """write_result_file(result, folder, name=None) -> Path, written atomically like the container side does."""
    return samples.write_sample


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
