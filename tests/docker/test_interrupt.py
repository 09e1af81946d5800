"""Ctrl-C during a containerized bench, and a kit process that dies without cleaning up.

Ctrl-C: the bench inside the container reports what finished, the container is gone, and the kit exits 130 with its
own one-line message. Two ways the interrupt arrives, both real: the whole process group gets SIGINT (a terminal's
Ctrl-C: the docker CLI forwards it into the container), or only the kit's process does (then the runner must send
it to the container itself, with `docker kill --signal INT`). The same holds through nox (`nox -s bench-hf`).

Each kit child is started with SIGINT at its default (tests/support/signals.py), whatever this test run inherited;
test_ctrl_c_tests_pass_when_started_with_sigint_ignored checks that by running them the way nohup would.

SIGKILL (or a timeout's kill) gives the kit no chance to clean up: its container must still go.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest

from dockerkit import REPO, kit_dirs
from signals import default_sigint, ignored_sigint

from kit.runners.docker import OWNER_LABEL, RUNNER_LABEL, owner_tag, sweep_stale_containers

# Long enough that only an interrupt ends it.
ENDLESS_BENCH = ["--synthetic", "tiny", "--device", "cpu", "--warmup", "0", "--iters", "100000", "--input-len", "16",
                 "--output-len", "8"]


@dataclass
class Measuring:
    """A `python -m kit` (or nox) process group whose container has started measuring."""
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    container: str = ""

    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)


def start_measuring(cmd: list[str], env: dict) -> Measuring:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=default_sigint)
    run = Measuring(proc)
    measuring = threading.Event()

    def reader():
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            run.lines.append(line)
            if "[bench] measured" in line:
                measuring.set()

    threading.Thread(target=reader, daemon=True).start()
    if not measuring.wait(600):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the bench never started measuring:\n" + run.output()[-3000:])
    names = re.findall(r"log: \S*?-(awq-kit-hf-[0-9a-f]{8})\.log", run.output())
    assert names, "the runner names its container"
    run.container = names[-1]
    return run


def container_exists(client, name: str) -> bool:
    return subprocess.run([client.path, "inspect", name], capture_output=True, env=client.env()).returncode == 0


def gone_within(client, name: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while container_exists(client, name):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def kit_bench(tmp_path) -> list[str]:
    return [sys.executable, "-m", "kit", "bench-hf", "--runner", "docker", "--no-report", *kit_dirs(tmp_path),
            *ENDLESS_BENCH]


def signal_kit(run, target: str, sig: int) -> None:
    """To the kit's whole process group (a terminal's Ctrl-C), or to the kit process alone."""
    (os.killpg if target == "process-group" else os.kill)(run.proc.pid, sig)


@pytest.mark.parametrize("target", ["process-group", "kit-only"])
def test_ctrl_c_stops_the_container(target, docker_client, hf_image, kit_env, tmp_path):
    run = start_measuring(kit_bench(tmp_path), kit_env)
    signal_kit(run, target, signal.SIGINT)
    rc = run.wait(timeout=90)
    out = run.output()
    print(out[-3000:])
    assert rc == 130, f"exit code {rc}"
    assert re.search(r"interrupted after \d+ of 100000 measured iterations", out), "the bench's own report"
    assert "interrupted: results already written are kept" in out
    assert "Traceback" not in out
    assert not container_exists(docker_client, run.container), f"container {run.container} is still there"
    assert not list((tmp_path / "results").glob("*.json")), "nothing partial is written"


def test_ctrl_c_tests_pass_when_started_with_sigint_ignored(docker_client, hf_image):
    """Run the Ctrl-C tests above the way nohup or a background job would start them: SIGINT ignored."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/docker/test_interrupt.py",
                        "-k", "test_ctrl_c_stops_the_container"], cwd=REPO, preexec_fn=ignored_sigint,
                       capture_output=True, text=True, timeout=900)
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout


@pytest.mark.parametrize("target", ["process-group", "kit-only"])
def test_a_killed_kit_leaves_no_container(target, docker_client, hf_image, kit_env, tmp_path):
    """SIGKILL, as a timeout or the OOM killer would send it: the kit cannot clean up, its container still goes."""
    run = start_measuring(kit_bench(tmp_path), kit_env)
    signal_kit(run, target, signal.SIGKILL)
    run.wait(timeout=30)
    assert gone_within(docker_client, run.container, 60), f"container {run.container} outlived its kit process"


def test_sweep_removes_only_the_kits_stale_containers(docker_client, hf_image):
    """The sweep every run starts with: a kit container whose kit process has ended goes; a live kit process's
    container, another machine's, and a container without the kit's labels stay."""
    ended = subprocess.Popen(["sleep", "60"])
    ended_owner = owner_tag(ended.pid)
    ended.kill()
    ended.wait()
    labels = {
        "stale": ["--label", RUNNER_LABEL, "--label", f"{OWNER_LABEL}={ended_owner}"],
        "alive": ["--label", RUNNER_LABEL, "--label", f"{OWNER_LABEL}={owner_tag()}"],
        "elsewhere": ["--label", RUNNER_LABEL, "--label", f"{OWNER_LABEL}=another-boot/4026531836/{ended.pid}/1"],
        "not-the-kits": ["--label", f"{OWNER_LABEL}={ended_owner}"],
    }
    names = {}
    try:
        for what, label_args in labels.items():
            r = subprocess.run([docker_client.path, "run", "-d", "--rm", *label_args, hf_image.tag, "sleep", "300"],
                               capture_output=True, text=True, env=docker_client.env(), check=True)
            names[what] = subprocess.run([docker_client.path, "inspect", "--format", "{{.Name}}", r.stdout.strip()],
                                         capture_output=True, text=True, env=docker_client.env()).stdout.strip("/\n")
        removed = sweep_stale_containers(docker_client)
        assert names["stale"] in removed
        assert not container_exists(docker_client, names["stale"])
        for what in ("alive", "elsewhere", "not-the-kits"):
            assert names[what] not in removed and container_exists(docker_client, names[what]), what
    finally:
        for name in names.values():
            subprocess.run([docker_client.path, "rm", "--force", name], capture_output=True, env=docker_client.env())


def test_ctrl_c_through_nox(docker_client, hf_image, kit_env, tmp_path):
    """`nox -s bench-hf` and a terminal's Ctrl-C: nox waits for the kit, so the kit's own closing lines (the
    interrupt line, what happened to the reports) appear, and the container is gone."""
    cmd = [sys.executable, "-m", "nox", "-f", str(REPO / "noxfile.py"), "-s", "bench-hf", "--", "--runner", "docker",
           *kit_dirs(tmp_path), *ENDLESS_BENCH]
    run = start_measuring(cmd, kit_env)
    os.killpg(run.proc.pid, signal.SIGINT)
    rc = run.wait(timeout=120)
    out = run.output()
    print(out[-3000:])
    assert rc != 0
    assert re.search(r"interrupted after \d+ of 100000 measured iterations", out), "the bench's own report"
    assert "interrupted: results already written are kept" in out, "the kit's own line"
    assert f"report: no new result in {tmp_path / 'results'}" in out, "the kit says what became of the reports"
    assert "Traceback" not in out
    assert not container_exists(docker_client, run.container)
