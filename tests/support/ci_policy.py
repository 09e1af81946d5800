"""One skip policy for every suite: a missing prerequisite skips with its reason on a developer's
machine, and fails under CI=true, where every test must run.

The host and docker suites go further (CI has everything they need): with CI=true any skip there, whoever
raised it (a skip marker, importorskip, a module-level skip), is reported as a failure. Their conftest.py
imports the two hooks below; the suites that run inside the images only use skip_or_fail.
"""
import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true, so this is not skipped: {reason}")
    pytest.skip(reason)


def _no_skip_in_ci(report):
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"CI=true, so a skip is a failure in this suite: {reason}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return _no_skip_in_ci((yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    return _no_skip_in_ci((yield))
