"""Fixtures for the Slurm tests: the REAL slurmctld/slurmd that .ci/slurm-up starts (no mocks).

They need the cluster .ci/slurm-up makes: partitions `debug` (default) and `urgent`, one node with the fake GPU
types fakea and fakeb. Without it the tests skip with the reason ("run .ci/slurm-up"), except under CI=true,
where they fail. Jobs run as whoever runs pytest (root in CI); tmp folders are on this machine, which is the
node, so they are "shared".
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
for _p in (str(REPO), str(REPO / "tests" / "support")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ci_policy import IN_CI, skip_or_fail  # noqa: E402
from kit import slurm  # noqa: E402
from core.errors import KitError  # noqa: E402

SETUP = "run .ci/slurm-up (as root) to start the single-node Slurm these tests use"


@pytest.fixture(scope="session")
def tools() -> slurm.SlurmTools:
    try:
        t = slurm.find_slurm()
    except KitError as e:
        skip_or_fail(f"no usable Slurm ({str(e).split('. ')[0].replace('--runner slurm: ', '')}); {SETUP}")
    parts = slurm.partitions(t)
    debug = parts.get("debug")
    if not debug or not debug.default or not {"fakea", "fakeb"} <= debug.gpu_types() or "urgent" not in parts:
        skip_or_fail(f"this Slurm is not the one .ci/slurm-up makes (partitions: "
                     f"{ {n: p.gres for n, p in parts.items()} }); {SETUP}")
    return t


@pytest.fixture
def jobs(tools):
    """Ids the test submitted (append to it); any still queued or running at teardown is cancelled."""
    ids: list[str] = []
    yield ids
    if ids:
        slurm.cancel(tools, ids, wait_s=10)


def pytest_report_header(config):
    return [f"slurm tests: CI={IN_CI}"]
