"""`--runner slurm` through the real CLI (`python -m kit bench-hf --runner slurm ...` as a subprocess) against the
real slurmctld of .ci/slurm-up: the CPU demo workload as sbatch jobs, run on the node by the local runner
(.venv-hf) and by the Docker runner (the pinned hf image), Ctrl-C, a job failing on the node, a preempted job
while the other goes on, the fake-GPU-type matrix with --no-wait, idempotence and --again, and the preflight's
one-paragraph errors. No mocks.

Every job asks for 1 CPU, so two run at once on the 2-CPU node; where a test runs two kit commands, it starts
them together. KIT_SLURM_POLL_S=0.5 and KIT_SLURM_POLL_MAX_S=2 make the kit notice a job's end sooner than its default
2 s backing off to 30 s.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ci_policy import skip_or_fail
from conftest import REPO
from kit import slurm
from signals import default_sigint

CPU_DEMO = ["--synthetic", "tiny", "--device", "cpu", "--input-len", "32", "--output-len", "8", "--warmup", "1",
            "--iters", "2"]
ENDLESS = ["--synthetic", "tiny", "--device", "cpu", "--input-len", "32", "--output-len", "8", "--warmup", "0",
           "--iters", "100000"]
NODE = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
SUBMITTED = re.compile(r"submitted job (\d+): (.*?); log (\S+)")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Caches shared by the module's runs: the tiny synthetic checkpoint is made once (atomically, so two jobs
    making it at once is fine)."""
    return tmp_path_factory.mktemp("slurm-kit-shared")


@pytest.fixture
def env(shared, tmp_path) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    e.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "KIT_CACHE_DIR": str(shared / "cache"),
              "HF_HOME": str(shared / "hf-home"), "KIT_SLURM_POLL_S": "0.5", "KIT_SLURM_POLL_MAX_S": "2"})
    for k in [k for k in e if k.startswith("SBATCH_")]:  # not the developer's own sbatch settings
        del e[k]
    e.setdefault("KIT_BASE_IMAGE", "kit-base:bookworm")
    if os.path.isfile("/etc/ssl/certs/ca-certificates.crt"):
        e.setdefault("KIT_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    return e


@pytest.fixture(scope="module")
def hf_venv() -> Path:
    """The local runner's default interpreter, made from the locks by `nox -s venv -- hf`."""
    python = REPO / ".venv-hf" / "bin" / "python"
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('torch', 'transformers', 'awq')))"
    if not python.exists() or subprocess.run([str(python), "-c", probe]).returncode != 0:
        skip_or_fail(f"{python} is missing or lacks the hf stack: make it with `nox -s venv -- hf` (uv, from the "
                     "hashed locks); the local node runner runs the step with it")
    return python


@pytest.fixture(scope="module")
def docker_ok() -> None:
    from kit import docker_client, preflight

    try:
        docker_client.check_daemon(docker_client.find_docker())
    except preflight.PreflightError as e:
        skip_or_fail(f"no usable Docker for the docker node runner: {e}")


def dirs(tmp_path: Path, name: str = "") -> list[str]:
    base = tmp_path / name if name else tmp_path
    return ["--results-dir", str(base / "results"), "--output-dir", str(base / "output"),
            "--reports-dir", str(base / "reports")]


@dataclass
class Kit:
    """A `python -m kit ...` process, its output (stdout and stderr, interleaved) collected as it arrives."""

    proc: subprocess.Popen
    args: list[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 600) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"`python -m kit {' '.join(self.args)}` still running after {timeout:.0f}s:\n{self.out[-4000:]}")
        if self.reader:
            self.reader.join(10)
        print(f"$ python -m kit {' '.join(self.args)}  -> exit {rc}\n{self.out[-6000:]}")
        return rc

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.out)
            if m:
                return m
            if self.proc.poll() is not None and self.reader is not None and not self.reader.is_alive():
                break
            time.sleep(0.2)
        os.killpg(self.proc.pid, signal.SIGKILL)
        pytest.fail(f"no {pattern!r} in the output of `python -m kit {' '.join(self.args)}`:\n{self.out[-4000:]}")

    def submitted(self) -> dict[str, tuple[str, Path]]:
        """{job id: (what, log path)} of the jobs this run submitted."""
        return {m.group(1): (m.group(2), Path(m.group(3))) for m in SUBMITTED.finditer(self.out)}


def start(args: list[str], env: dict) -> Kit:
    proc = subprocess.Popen([sys.executable, "-m", "kit", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=default_sigint)
    kit = Kit(proc, args)

    def read():
        assert proc.stdout is not None
        for raw in proc.stdout:
            kit.lines.append(raw.decode("utf-8", "replace"))

    kit.reader = threading.Thread(target=read, daemon=True)
    kit.reader.start()
    return kit


def run(args: list[str], env: dict, timeout: float = 600) -> tuple[int, str]:
    kit = start(args, env)
    return kit.wait(timeout), kit.out


def results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def own_jobs(tools, kit: Kit, jobs: list[str]) -> dict[str, slurm.JobState]:
    ids = list(kit.submitted())
    jobs.extend(ids)
    return slurm.job_states(tools, ids)


# --------------------------------------------------------------------------- the two node runners


def test_local_and_docker_node_runners(tools, jobs, env, hf_venv, docker_ok, tmp_path):
    """One job each, run at once: the local runner with .venv-hf (time limit from sbatch's own SBATCH_TIMELIMIT,
    partition SBATCH_PARTITION overridden by --partition) and the Docker runner in the pinned image on fake GPU
    fakeb."""
    local = start(["bench-hf", "--runner", "slurm", "--partition", "debug", "--node-runner", "local",
                   "--sbatch-arg=--comment=kit-slurm-test", *dirs(tmp_path, "local"), *CPU_DEMO],
                  dict(env, SBATCH_PARTITION="nosuch", SBATCH_TIMELIMIT="10"))
    docker = start(["bench-hf", "--runner", "slurm", "--node-runner", "docker", "--gpu-types", "fakeb",
                    *dirs(tmp_path, "docker"), *CPU_DEMO], env)
    rc_local, rc_docker = local.wait(), docker.wait()
    own_jobs(tools, local, jobs), own_jobs(tools, docker, jobs)
    assert (rc_local, rc_docker) == (0, 0), (local.out[-3000:], docker.out[-3000:])

    for kit, name, runner, gpu_type in ((local, "local", "local", None), (docker, "docker", "docker", "fakeb")):
        (job_id, (what, log)), = kit.submitted().items()
        st = slurm.job_states(tools, [job_id])[job_id]
        assert st.ok and st.partition == "debug", st
        out = kit.out
        assert f"[transformers/{gpu_type or 'cpu'}] job {job_id} RUNNING" in out
        assert re.search(rf"\[transformers/{gpu_type or 'cpu'}\] \[bench\] measured 2/2", out), "the job's own lines"
        assert f"job {job_id} (transformers + autoawq bench on {gpu_type or 'CPU'}) COMPLETED on node {NODE}" in out
        (result,) = results(tmp_path / name / "results")
        p = result["provenance"]
        assert p["runner"] == runner and result["backend"]["device"] == "cpu"
        assert p["slurm"] == {"job_id": job_id, "node": NODE, "partition": "debug", "gpu_type": gpu_type}
        assert (p["image_tag"] or "").startswith("awq-kit-hf:") == (runner == "docker")
        assert p["kit_commit"], "the kit commit reaches the result from the node"
        week1 = (tmp_path / name / "reports" / "week1.md").read_text()
        assert f"Slurm job {job_id} on node {NODE}, partition debug" in week1
        assert (tmp_path / name / "reports" / "week2.md").exists()
        assert log.exists() and log.with_suffix(".sbatch").exists()
        ledger = json.loads(next((tmp_path / name / "results" / ".slurm").glob("*.json")).read_text())
        assert (ledger["job_id"], ledger["state"], ledger["exit_code"]) == (job_id, "COMPLETED", 0)
    ledger = json.loads(next((tmp_path / "local" / "results" / ".slurm").glob("*.json")).read_text())
    assert {"--partition=debug", "--comment=kit-slurm-test"} <= set(ledger["sbatch_args"])
    assert not any(a.startswith("--time") for a in ledger["sbatch_args"])  # not given: sbatch read SBATCH_TIMELIMIT
    limit = tools.run("squeue", "-h", "-j", ledger["job_id"], "--states=all", "-O", "TimeLimit").stdout.strip()
    assert limit == "10:00", limit
    assert "--gres=gpu:fakeb:1" in json.loads(
        next((tmp_path / "docker" / "results" / ".slurm").glob("*.json")).read_text())["sbatch_args"]


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_cancels_the_job_and_its_container(tools, jobs, env, docker_ok, tmp_path):
    """SIGINT to the kit while its job measures in a container on the node: the kit scancels the job (Slurm sends
    SIGTERM to the job's processes: the kit on the node handles it like Ctrl-C), the job ends CANCELLED, the
    container is gone, no result is written, and the kit exits 130."""
    kit = start(["bench-hf", "--runner", "slurm", "--node-runner", "docker", *dirs(tmp_path), *ENDLESS], env)
    kit.wait_for(r"\[transformers/cpu\] \[bench\] measured 2/")
    container = re.findall(r"log: \S*?-(awq-kit-hf-[0-9a-f]{8})\.log", kit.out)[-1]
    (job_id, (_, log)), = kit.submitted().items()
    jobs.append(job_id)
    kit.proc.send_signal(signal.SIGINT)
    rc = kit.wait(timeout=180)
    assert rc == 130, kit.out[-3000:]
    st = slurm.job_states(tools, [job_id])[job_id]
    assert st.state == "CANCELLED", st
    out = kit.out
    assert f"interrupt: cancelling job(s) {job_id} (scancel by id)" in out
    assert f"job {job_id} (transformers + autoawq bench on CPU): CANCELLED" in out
    assert "interrupted: results already written are kept" in out and "Traceback" not in out
    assert not list((tmp_path / "results").glob("*.json")), "nothing partial is written"
    assert "interrupted: results already written are kept" in log.read_text(), "the node's kit handled SIGTERM"
    docker = shutil.which("docker") or "docker"
    deadline = time.monotonic() + 30
    while subprocess.run([docker, "inspect", container], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, f"container {container} outlived its cancelled job"
        time.sleep(0.5)
    ledger = json.loads(next((tmp_path / "results" / ".slurm").glob("*.json")).read_text())
    assert ledger["state"] == "CANCELLED" and ledger["job_id"] == job_id


# --------------------------------------------------------------------------- failures


def test_job_failing_on_the_node(tools, jobs, env, tmp_path):
    """The node's local runner refuses an interpreter without the stack: the job fails there, and its log tail
    (the runner's own paragraph) is in the kit's error; exit code non-zero."""
    rc, out = run(["bench-hf", "--runner", "slurm", "--node-runner", "local", "--python", "/usr/bin/python3",
                   *dirs(tmp_path), *CPU_DEMO], env)
    (job_id,) = re.findall(r"submitted job (\d+)", out)
    jobs.append(job_id)
    assert rc == 2, out
    assert re.search(rf"bench-hf transformers \+ autoawq bench on CPU: Slurm job {job_id} ended FAILED with exit "
                     rf"code 2 on node {NODE} in partition debug", out)
    paragraph = out.split(f"Slurm job {job_id} ended FAILED", 1)[1]
    assert "The last" in paragraph and "/usr/bin/python3 cannot run the hf steps, it lacks torch" in paragraph
    assert "error: 1 of 1 Slurm job(s) did not complete" in out and f"job {job_id} (transformers + autoawq " \
        "bench on CPU) FAILED, exit code 2" in out
    assert not list((tmp_path / "results").glob("*.json"))
    # the failed spec is submitted again next time (it is not "already" anything)
    ledger = json.loads(next((tmp_path / "results" / ".slurm").glob("*.json")).read_text())
    assert ledger["state"] == "FAILED" and ledger["exit_code"] == 2


def test_preempted_job_and_the_other_goes_on(tools, jobs, env, hf_venv, tmp_path):
    """The matrix fakea,fakeb; a job of the higher-priority partition `urgent` takes fakea from the running kit job
    (PreemptMode=CANCEL: PREEMPTED). Its paragraph is printed, the fakeb job completes and writes its result, and
    the kit exits non-zero naming the preempted one."""
    workload = [a if a != "2" else "20" for a in CPU_DEMO]  # --iters 20: still measuring when preempted
    kit = start(["bench-hf", "--runner", "slurm", "--node-runner", "local", "--gpu-types", "fakea,fakeb",
                 *dirs(tmp_path), *workload], env)
    kit.wait_for(r"\[transformers/fakea\] \[bench\] warm-up 1/1")  # 20 measured iterations to go
    ids = {what.rsplit(" ", 1)[1]: jid for jid, (what, _) in kit.submitted().items()}
    jobs.extend(ids.values())
    urgent = subprocess.run(["sbatch", "--parsable", "--partition=urgent", slurm.gres_arg("fakea"), "--job-name",
                             "kit-test-urgent", "--output", str(tmp_path / "urgent.log"), "--wrap", "echo urgent"],
                            capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    jobs.append(urgent)
    rc = kit.wait(timeout=600)
    out = kit.out
    assert rc == 2, out[-3000:]
    st = slurm.job_states(tools, [ids["fakea"], ids["fakeb"]])
    assert st[ids["fakea"]].state == "PREEMPTED" and st[ids["fakeb"]].ok, st
    assert f"Slurm job {ids['fakea']} ended PREEMPTED" in out and "a job of higher priority took its node" in out
    assert f"job {ids['fakeb']} (transformers + autoawq bench on fakeb) COMPLETED" in out
    assert "1 of 2 Slurm job(s) did not complete" in out and f"job {ids['fakea']} (transformers + autoawq bench " \
        "on fakea) PREEMPTED" in out
    (result,) = results(tmp_path / "results")
    assert result["provenance"]["slurm"]["gpu_type"] == "fakeb" and result["workload"]["iterations"] == 20
    assert (tmp_path / "reports" / "week1.md").exists(), "what finished is assembled"


# --------------------------------------------------------------------------- the matrix, --no-wait, idempotence


def test_matrix_no_wait_idempotence_and_again(tools, jobs, env, hf_venv, tmp_path):
    cmd = ["bench-hf", "--runner", "slurm", "--node-runner", "local", "--gpu-types", "fakea,fakeb",
           *dirs(tmp_path), *CPU_DEMO]
    # --no-wait: two jobs, their ids printed, and back at once
    t0 = time.monotonic()
    kit = start(cmd + ["--no-wait"], env)
    assert kit.wait(timeout=120) == 0
    first = own_jobs(tools, kit, jobs)
    assert len(first) == 2 and all(not s.terminal for s in first.values()), first
    assert re.search(r"not waiting \(--no-wait\): job\(s\) \d+,\d+; logs under ", kit.out)
    assert time.monotonic() - t0 < 60
    by_type = {what.rsplit(" ", 1)[1]: jid for jid, (what, _) in kit.submitted().items()}
    assert set(by_type) == {"fakea", "fakeb"}

    # the same spec again while they are queued or running: nothing submitted, the run follows them to the end
    kit = start(cmd, env)
    assert kit.wait() == 0, kit.out[-3000:]
    assert not kit.submitted()
    for t, jid in by_type.items():
        assert re.search(rf"bench on {t}: already (pending|configuring|running|completing): job {jid}", kit.out), t
    rs = results(tmp_path / "results")
    assert sorted((r["provenance"]["slurm"]["gpu_type"], r["provenance"]["slurm"]["job_id"]) for r in rs) == \
        sorted(by_type.items())

    # `python -m kit report` assembles what arrived
    shutil.rmtree(tmp_path / "reports")
    rc, out = run(["report", "--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "reports")],
                  env)
    assert rc == 0 and (tmp_path / "reports" / "week1.md").exists()
    week1 = (tmp_path / "reports" / "week1.md").read_text()
    assert any(f"Slurm job {jid} on node {NODE}" in week1 for jid in by_type.values())

    # once more: both completed, nothing runs
    rc, out = run(cmd, env)
    assert rc == 0 and "submitted job" not in out
    for t, jid in by_type.items():
        assert f"bench on {t}: already completed: job {jid} (COMPLETED" in out
    assert "nothing to run" in out and len(results(tmp_path / "results")) == 2

    # --again: two new jobs, two more results
    kit = start(cmd + ["--again"], env)
    assert kit.wait() == 0, kit.out[-3000:]
    again = own_jobs(tools, kit, jobs)
    assert len(again) == 2 and not set(again) & set(by_type.values()) and all(s.ok for s in again.values())
    assert "--again: submitting it again (previous job" in kit.out
    assert len(results(tmp_path / "results")) == 4


# --------------------------------------------------------------------------- before anything is submitted


def _nothing_submitted(tmp_path: Path) -> None:
    assert not (tmp_path / "results" / ".slurm").exists() and not (tmp_path / "output" / "slurm").exists()


@pytest.mark.parametrize("args, words", [
    (["--partition", "nopart"], "unknown partition 'nopart': the partitions `sinfo` shows are: debug (default), urgent"),
    (["--gpu-types", "fakea,nosuch"], "unknown GPU type 'nosuch' in partition 'debug': its nodes offer gpu:fakea:1, "
                                      "gpu:fakeb:1"),
])
def test_preflight_errors(tools, env, tmp_path, args, words):
    rc, out = run(["bench-hf", "--runner", "slurm", *args, *dirs(tmp_path), *CPU_DEMO], env, timeout=120)
    assert rc == 2 and words in out
    (error,) = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert words in error  # one paragraph, one line
    _nothing_submitted(tmp_path)


def test_no_sbatch_and_bad_options(env, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    rc, out = run(["bench-hf", "--runner", "slurm", *dirs(tmp_path), *CPU_DEMO], dict(env, PATH=str(empty)))
    assert rc == 2 and "error: --runner slurm: there is no `sbatch` on PATH" in out
    rc, out = run(["bench-hf", "--runner", "slurm", *dirs(tmp_path), *CPU_DEMO], dict(env, SBATCH_PARTITION="nopart"))
    assert rc == 2 and "unknown partition 'nopart': the partitions `sinfo` shows are" in out  # sbatch's variable
    rc, out = run(["bench-hf", "--gpu-types", "fakea", *dirs(tmp_path), *CPU_DEMO], env)
    assert rc == 2 and "error: --gpu-types only apply to --runner slurm" in out
    _nothing_submitted(tmp_path)
