"""The Ctrl-C tests set the signal disposition they need instead of inheriting it.

Started the way nohup or a background job starts a process (SIGINT ignored, passed on across exec), the host
suite's Ctrl-C tests must still pass. (The Docker suite's counterpart: tests/docker/test_interrupt.py.)
"""
from __future__ import annotations

import subprocess
import sys

from signals import ignored_sigint

from kit import KIT_ROOT


def test_host_ctrl_c_tests_pass_when_started_with_sigint_ignored():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/host/test_vllm_stream.py",
                        "-k", "ctrl_c"], cwd=KIT_ROOT, preexec_fn=ignored_sigint, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 passed" in r.stdout, r.stdout[-2000:]
