"""`--runner slurm` without a cluster: options, job states (sacct as a test double), polling, the spec hash, the
step as JSON, the job script, and the Slurm part of the provenance (tests/slurm runs the real thing against
slurmctld)."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import provenance
from core.errors import KitError
from core.results import Provenance, SlurmJob
from core.workload import WorkloadSpec
from kit import KIT_ROOT, slurm
from kit.cli import plan
from kit.runners import RunnerOptions, Step
from kit.runners import slurm as sr
from kit.runners.docker import SLURM_ENV, container_env, docker_run_command

CPU = ["--synthetic", "tiny", "--device", "cpu"]


def options(argv: list[str]):
    ns, steps = plan("bench-hf", argv)
    return sr.slurm_options(ns), steps


def test_one_declaration_gives_flags_and_sbatch_arguments():
    o, _ = options(["--runner", "slurm", "--partition", "debug", "--account", "proj", "--time", "90",
                    "--constraint", "ib", "--sbatch-arg=--qos=high", "--gpu-types", "t4,t4,l4", "--node-runner",
                    "local", "--again", "--no-wait", *CPU])
    assert o.sbatch_args == ["--partition=debug", "--account=proj", "--time=90", "--constraint=ib", "--qos=high"]
    assert (o.gpu_types, o.node_runner, o.again, o.no_wait) == (["t4", "l4"], "local", True, True)
    assert [f"--{name}" for name in sr.OPTIONS] == ["--partition", "--account", "--time", "--constraint",
                                                    "--sbatch-arg", "--gpu-types", "--node-runner", "--again",
                                                    "--no-wait"]


@pytest.mark.parametrize("var", ["SBATCH_PARTITION", "SBATCH_ACCOUNT", "SBATCH_TIMELIMIT", "SBATCH_CONSTRAINT"])
def test_an_option_not_given_is_not_passed_so_sbatch_reads_its_own_variable(monkeypatch, var):
    monkeypatch.setenv(var, "from-env")
    o, _ = options(["--runner", "slurm", *CPU])
    assert o.sbatch_args == [] and (o.gpu_types, o.node_runner, o.again, o.no_wait) == ([], "docker", False, False)
    assert var in " ".join(text for text, _kw in sr.OPTIONS.values())  # --help says which variable applies


def _fake(tmp_path: Path, name: str, script: str) -> str:
    exe = tmp_path / name
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return str(exe)


# squeue's line for a job (JobID|State|Reason|NodeList|Partition|exit_code|Name) or none, sacct's, and the result
SQUEUE_DONE = "12|COMPLETED|None|n1|debug|0|kit-x|"
SQUEUE_TIMEOUT = "12|TIMEOUT|TimeLimit|n1|debug|15|kit-x|"


@pytest.mark.parametrize("squeue, sacct, want", [
    ("", "12|CANCELLED by 0|0:15|n1|debug|kit-x", ("CANCELLED", 0, 15, "sacct")),  # forgotten by squeue
    (SQUEUE_TIMEOUT, "12|TIMEOUT|0:15|n1|debug|kit-x", ("TIMEOUT", 0, 15, "sacct")),  # accounting wins once ended
    (SQUEUE_DONE, "12|RUNNING|0:0|n1|debug|kit-x", ("COMPLETED", 0, None, "squeue")),  # sacct lags: squeue stands
    ("12|RUNNING|None|n1|debug|0|kit-x|", "exit 99", ("RUNNING", None, None, "squeue")),  # running: no sacct
    (SQUEUE_DONE, "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1",
     ("COMPLETED", 0, None, "squeue")),  # no slurmdbd (CI)
    ("", "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1", ("UNKNOWN", None, None, "missing")),
])
def test_a_finished_job_is_read_from_sacct_when_there_is_accounting(tmp_path, squeue, sacct, want):
    """A test double for sacct: CI's Slurm has no slurmdbd."""
    sacct_script = sacct if sacct.startswith(("exit", "echo")) else f"echo '{sacct}'\n"
    tools = slurm.SlurmTools(sbatch="/bin/false", squeue=_fake(tmp_path, "squeue", f"echo '{squeue}'\n"),
                             scancel="/bin/true", sinfo="/bin/true", sacct=_fake(tmp_path, "sacct", sacct_script))
    slurm._SACCT_DISABLED.clear()
    st = slurm.job_states(tools, ["12"])["12"]
    assert (st.state, st.exit_code, st.signal, st.source) == want, st
    if squeue == SQUEUE_TIMEOUT:
        assert st.reason == "TimeLimit"  # squeue's reason is kept


def test_wait_backs_off_and_polls_again_soon_after_news(tmp_path, monkeypatch):
    count = tmp_path / "count"
    squeue = _fake(tmp_path, "squeue", f'n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}\n'
                   'if [ "$n" -ge 6 ]; then echo "5|COMPLETED|None|n1|debug|0|x|"; '
                   'elif [ "$n" -ge 3 ]; then echo "5|RUNNING|None|n1|debug|0|x|"; '
                   'else echo "5|PENDING|Priority|||debug|0|x|"; fi\n')
    tools = slurm.SlurmTools(sbatch="/bin/false", squeue=squeue, scancel="/bin/true", sinfo="/bin/true")
    sleeps = []
    monkeypatch.setattr(slurm, "time", SimpleNamespace(monotonic=slurm.time.monotonic, sleep=sleeps.append))
    assert slurm.wait(tools, ["5"], poll_s=2, poll_max_s=8)["5"].ok
    # PENDING (news) 2, nothing 4, 8, RUNNING (news) 2, nothing 4, 8 (the ceiling), then COMPLETED
    assert sleeps == [2, 4, 8, 2, 4, 8]


def test_the_probe_is_charged_like_the_jobs(tmp_path, monkeypatch):
    """srun reads SLURM_ACCOUNT where sbatch reads SBATCH_ACCOUNT: the probe gets the user's sbatch variables."""
    env_out = tmp_path / "env"
    srun = _fake(tmp_path, "srun", f"env > {env_out}\nexit 1\n")
    tools = slurm.SlurmTools(sbatch="/bin/false", squeue="/bin/true", scancel="/bin/true", sinfo="/bin/true", srun=srun)
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj")
    monkeypatch.setenv("SBATCH_QOS", "low")
    monkeypatch.setenv("SLURM_QOS", "mine")
    with pytest.raises(KitError, match="does not see the folder"):
        slurm.check_visible(tools, [tmp_path / "results"], partition="debug")
    env = dict(ln.split("=", 1) for ln in env_out.read_text().splitlines() if "=" in ln)
    assert env["SLURM_ACCOUNT"] == "proj" and env["SLURM_QOS"] == "mine"


def test_slurm_options_need_the_slurm_runner():
    with pytest.raises(KitError) as e:
        options(["--gpu-types", "a100", "--no-wait", *CPU])
    assert str(e.value).startswith("--gpu-types, --no-wait only apply to --runner slurm")
    assert options(["--runner", "local", *CPU])[0] is None


def test_jobs_per_step_and_gpu_type(tmp_path):
    opts = RunnerOptions(results_dir=tmp_path / "results")
    o, steps = options(["--runner", "slurm", "--gpu-types", "fakea,fakeb", *CPU])
    jobs = sr.plan_jobs(steps, opts, o)
    assert [(j.gpu_type, j.wants_gpu, j.label, j.kind, sr.short_name(j.step)) for j in jobs] == [
        ("fakea", True, "transformers + autoawq bench on fakea", "fakea", "transformers"),
        ("fakeb", True, "transformers + autoawq bench on fakeb", "fakeb", "transformers")]
    assert jobs[0].key != jobs[1].key and jobs[0].ledger.parent == tmp_path / "results" / ".slurm"
    o, steps = options(["--runner", "slurm", *CPU])
    (cpu,) = sr.plan_jobs(steps, opts, o)
    assert (cpu.gpu_type, cpu.wants_gpu, cpu.label) == (None, False, "transformers + autoawq bench on CPU")
    o, steps = options(["--runner", "slurm", "--synthetic", "tiny"])  # a GPU workload: any GPU
    (gpu,) = sr.plan_jobs(steps, opts, o)
    assert (gpu.wants_gpu, gpu.label, gpu.kind) == (True, "transformers + autoawq bench on any GPU", "gpu")
    ns, steps = plan("bench-vllm", ["--runner", "slurm", "--synthetic", "tiny", "--vllm", "0.20"])
    assert [sr.short_name(s) for s in steps] == ["vllm-0.20-awq", "vllm-0.20-awq_marlin"]
    ns, (prof,) = plan("profile", ["--runner", "slurm", *CPU])
    assert sr.short_name(prof) == "profile"


def test_the_spec_is_stack_entry_workload_gpu_type_and_results_folder(tmp_path):
    step = Step("hf", ("-m", "bench", "run", "--backend", "transformers"), WorkloadSpec(iters=2), "d")
    key, spec = sr.spec_of(step, "a100", tmp_path / "r")
    assert spec == {"stack": "hf", "entry": list(step.argv), "workload": json.loads(WorkloadSpec(iters=2).to_json()),
                    "gpu_type": "a100", "results_dir": str((tmp_path / "r").resolve())}
    same = Step("hf", step.argv, WorkloadSpec(iters=2), "another description")
    assert sr.spec_of(same, "a100", tmp_path / "r")[0] == key
    assert sr.spec_of(step, "h100", tmp_path / "r")[0] != key
    assert sr.spec_of(step, "a100", tmp_path / "other")[0] != key
    assert sr.spec_of(Step("hf", step.argv, WorkloadSpec(iters=3)), "a100", tmp_path / "r")[0] != key


def test_step_round_trips_as_json():
    step = Step("vllm-0.20", ("-m", "bench", "run", "--backend", "vllm"),
                WorkloadSpec(quantization="awq", synthetic="tiny", device="cuda"), "vLLM 0.20 (awq) bench")
    assert Step.from_json(step.to_json()) == step
    assert Step.from_json(Step("hf", ("x.py",)).to_json()) == Step("hf", ("x.py",))
    with pytest.raises(KitError, match="--step: not a step written by the kit"):
        Step.from_json('{"stack": "hf"}')


def test_job_script_runs_the_kit_from_the_checkout(tmp_path):
    opts = RunnerOptions(results_dir=tmp_path / "results", output_dir=tmp_path / "out", label="it's a 'test'",
                         python="/opt/py/bin/python")
    o, steps = options(["--runner", "slurm", "--node-runner", "local", "--gpu-types", "fakea", *CPU])
    (job,) = sr.plan_jobs(steps, opts, o)
    text = sr.job_script(job, opts, o, grace_s=9.5)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash" and "export KIT_SLURM_GPU_TYPE=fakea" in lines
    assert f"cd {KIT_ROOT} ||" in text
    argv = shlex.split(lines[-1])
    assert argv[0] == "exec" and argv[2:5] == ["-m", "kit", "step"]
    assert argv[argv.index("--runner") + 1] == "local" and argv[argv.index("--python") + 1] == "/opt/py/bin/python"
    assert argv[argv.index("--label") + 1] == "it's a 'test'" and argv[argv.index("--interrupt-grace") + 1] == "9.5"
    assert argv[argv.index("--ledger") + 1] == str(job.ledger)
    assert Step.from_json(argv[argv.index("--step") + 1]) == steps[0]


def test_ledger_merges_and_keeps_a_newer_submission(tmp_path):
    path = tmp_path / ".slurm" / "k.json"
    sr.update_ledger(path, {"job_id": "7", "state": "PENDING"})
    sr.update_ledger(path, {"state": "COMPLETED"}, only_job="7")
    assert sr.read_ledger(path)["state"] == "COMPLETED"
    sr.update_ledger(path, {"state": "FAILED"}, only_job="6")  # an older job's node: ignored
    entry = sr.read_ledger(path)
    assert (entry["job_id"], entry["state"]) == ("7", "COMPLETED") and entry["updated_utc"]
    assert [p.name for p in path.parent.iterdir()] == ["k.json"]  # no temp file left


def test_provenance_records_the_slurm_job(monkeypatch):
    env = {"SLURM_JOB_ID": "42", "SLURMD_NODENAME": "gpu07", "SLURM_JOB_PARTITION": "gpu", "KIT_SLURM_GPU_TYPE": "a100"}
    assert provenance.slurm_job(env) == SlurmJob(job_id="42", node="gpu07", partition="gpu", gpu_type="a100")
    assert provenance.slurm_job({"SLURM_JOB_ID": "9", "KIT_SLURM_GPU_TYPE": ""}) == SlurmJob(job_id="9")
    assert provenance.slurm_job({}) is None
    for k in env:
        monkeypatch.delenv(k, raising=False)
    assert provenance.collect_provenance("hf", "cpu").slurm is None
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = provenance.collect_provenance("hf", "cpu")
    assert p.slurm.job_id == "42" and Provenance.model_validate(p.model_dump()).slurm.gpu_type == "a100"


def test_docker_runner_forwards_the_job_by_name(tmp_path, monkeypatch):
    for k in SLURM_ENV:
        monkeypatch.setenv(k, "v-" + k)
    opts = RunnerOptions(results_dir=tmp_path / "r", output_dir=tmp_path / "o", cache_dir=tmp_path / "c",
                         hf_home=tmp_path / "h")
    step = Step("hf", ("-m", "bench", "run"), WorkloadSpec(device="cpu"))
    cmd = docker_run_command("docker", step, opts, "img", container_env(opts, {}, "hf"), name="n")
    for k in ("SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_JOB_PARTITION", "KIT_SLURM_GPU_TYPE"):
        assert cmd[cmd.index(k) - 1] == "-e" and f"{k}=" not in " ".join(cmd)


def test_container_guard_outlives_the_jobs_sigterm(tmp_path):
    """A Slurm cancel sends SIGTERM to every process of the job, the Docker runner's guard included: it must still
    remove the container once the kit's end of its pipe closes."""
    import signal
    import subprocess
    import sys
    import time

    record = tmp_path / "docker-args"
    fake_docker = tmp_path / "docker"
    fake_docker.write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n")
    fake_docker.chmod(0o755)
    guard = subprocess.Popen([sys.executable, "-m", "kit.runners.container_guard", str(fake_docker), "awq-kit-x"],
                             stdin=subprocess.PIPE, cwd=KIT_ROOT)
    deadline = time.monotonic() + 30  # until it has set its dispositions (SigIgn: bit N-1 for signal N)
    want = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
    while int(re.search(r"^SigIgn:\s*(\w+)", Path(f"/proc/{guard.pid}/status").read_text(), re.M).group(1), 16) \
            & want != want:
        assert time.monotonic() < deadline and guard.poll() is None
        time.sleep(0.05)
    for sig in (signal.SIGTERM, signal.SIGINT):
        guard.send_signal(sig)
    time.sleep(0.3)
    assert guard.poll() is None, "the guard died of SIGTERM/SIGINT"
    assert not record.exists()
    guard.stdin.close()
    assert guard.wait(timeout=30) == 0
    assert record.read_text() == "rm --force awq-kit-x\n"


def test_a_timed_out_job_gets_its_own_paragraph(tmp_path):
    """What squeue reports for a job killed at its time limit, as a real Slurm 22.05 reported it (state TIMEOUT,
    reason TimeLimit, raw wait status 15: signal 15) with the line slurmstepd writes into its log. The real
    one-minute timeout (Slurm's smallest limit, enforced up to 30 s late) cost CI 90 s, so it is no longer run."""
    from kit import slurm

    log = tmp_path / "slow.log"
    log.write_text("echo slow step\nslow step\nslurmstepd: error: *** JOB 19 ON vm CANCELLED AT 2026-11-29T18:20:01 "
                   "DUE TO TIME LIMIT ***\n")
    code, sig = slurm._wait_status("15")
    state = slurm.JobState("19", "TIMEOUT", code, sig, "TimeLimit", "vm", "debug", "kit-test-timeout")
    assert state.terminal and not state.ok
    text = slurm.failure_paragraph("profile on fakeb", state, log)
    assert "Slurm job 19 ended TIMEOUT by signal 15 on node vm in partition debug (reason: TimeLimit)" in text
    assert "time limit (sbatch --time)" in text and "slow step" in text and "DUE TO TIME LIMIT" in text
