"""Ctrl-C during a containerized bench: the bench inside the container reports what finished, the container is
gone, and the kit exits 130 with its own one-line message.

Two ways the interrupt arrives, both real: the whole process group gets SIGINT (a terminal's Ctrl-C: the
docker CLI forwards it into the container), or only the kit's process does (then the runner must send it
to the container itself, with `docker kill --signal INT`).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from dockerkit import REPO, kit_dirs


@pytest.mark.parametrize("target", ["process-group", "kit-only"])
def test_ctrl_c_stops_the_container(target, docker_client, hf_image, kit_env, tmp_path):
    cmd = [sys.executable, "-m", "kit", "bench-hf", "--runner", "docker", "--no-report", *kit_dirs(tmp_path),
           "--synthetic", "tiny", "--device", "cpu", "--warmup", "0", "--iters", "100000", "--input-len", "16",
           "--output-len", "8"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=kit_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lines: list[str] = []
    measuring = threading.Event()

    def reader():
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if "[bench] measured" in line:
                measuring.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        assert measuring.wait(300), "the bench never started measuring:\n" + "".join(lines[-30:])
        names = [m.group(1) for line in lines for m in [re.search(r"log: \S*?-(awq-kit-hf-[0-9a-f]{8})\.log", line)] if m]
        assert names, "the runner names its container"
        name = names[-1]
        t0 = time.monotonic()
        if target == "process-group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=90)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    t.join(timeout=10)
    out = "".join(lines)
    print(out[-3000:])
    assert rc == 130, f"exit code {rc}"
    assert re.search(r"interrupted after \d+ of 100000 measured iterations", out), "the bench's own report"
    assert "interrupted: results already written are kept" in out
    assert "Traceback" not in out
    assert elapsed < 60
    gone = subprocess.run([docker_client.path, "inspect", name], capture_output=True, env=docker_client.env())
    assert gone.returncode != 0, f"container {name} is still there"
    assert not list((tmp_path / "results").glob("*.json")), "nothing partial is written"
