"""Submit, follow, fail, cancel, preempt: kit/slurm.py against the real slurmctld of .ci/slurm-up."""
from __future__ import annotations

import json
import time

import pytest

from kit import slurm
from core.errors import KitError

POLL = 0.5


def run_to_end(tools, jobs, script, log, *, args=(), name="kit-test", timeout_s=120, **kw):
    jid = slurm.submit(tools, script, job_name=name, log_path=log, sbatch_args=list(args), **kw)
    jobs.append(jid)
    events = []
    final = slurm.wait(tools, [jid], events.append, log_paths={jid: log}, poll_s=POLL, poll_max_s=4 * POLL, timeout_s=timeout_s)
    return jid, final[jid], events


def test_submit_wait_results_arrive(tools, jobs, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    log = tmp_path / "logs" / "step.log"
    script = f"""#!/bin/bash
set -e
echo "step starting on $(hostname -s) in $PWD"
sleep 2
echo progress 1/2
printf '{{"job": "%s", "node": "%s", "partition": "%s"}}\\n' "$SLURM_JOB_ID" "$SLURMD_NODENAME" \\
    "$SLURM_JOB_PARTITION" > {results}/row.json.tmp
mv {results}/row.json.tmp {results}/row.json
echo progress 2/2
printf 'last line without newline'
"""
    jid, st, events = run_to_end(tools, jobs, script, log)
    assert st.state == "COMPLETED" and st.ok and st.exit_code == 0, st
    assert st.partition == "debug" and st.node and st.source == "squeue"
    row = json.loads((results / "row.json").read_text())
    assert row == {"job": jid, "node": st.node, "partition": "debug"}
    # the script is kept next to the log, and the job ran in the log's folder (the default --chdir)
    assert log.with_suffix(".sbatch").read_text().startswith("#!/bin/bash")
    states = [e.state.state for e in events if e.kind == "state"]
    lines = [e.line for e in events if e.kind == "log"]
    assert states[-1] == "COMPLETED" and "RUNNING" in states, states
    assert lines[0] == f"step starting on {st.node} in {log.parent}"
    assert lines[1:] == ["progress 1/2", "progress 2/2", "last line without newline"], lines
    # every log line arrives after the job was seen RUNNING (or later), in order
    first_log = next(i for i, e in enumerate(events) if e.kind == "log")
    assert any(e.kind == "state" and e.state.state in ("RUNNING", "COMPLETING", "COMPLETED")
               for e in events[:first_log])


def test_matrix_two_fake_gpu_types_run_side_by_side(tools, jobs, tmp_path):
    part = slurm.preflight(tools, gpu_types=["fakea", "fakeb"])
    assert part.name == "debug" and part.gpu_types() == {"fakea", "fakeb"}
    ids, logs = {}, {}
    for t in ("fakea", "fakeb"):
        logs[t] = tmp_path / f"{t}.log"
        ids[t] = slurm.submit(tools, f"echo type={t} gpus=$SLURM_JOB_GPUS cuda=$CUDA_VISIBLE_DEVICES; sleep 3\n",
                              job_name=f"kit-test-{t}", log_path=logs[t], sbatch_args=[slurm.gres_arg(t)])
        jobs.append(ids[t])
    seen_running: set[str] = set()

    def on_event(e):
        if e.kind == "state" and e.state.state == "RUNNING":
            seen_running.add(e.job_id)

    t0 = time.monotonic()
    final = slurm.wait(tools, list(ids.values()), on_event, poll_s=POLL, poll_max_s=4 * POLL, timeout_s=120)
    assert all(final[i].ok for i in ids.values()), final
    # one "GPU" each: fakea is device 0, fakeb device 1 (gres.conf order), and both ran at once
    assert slurm.LogFollower(logs["fakea"]).read(final=True) == ["type=fakea gpus=0 cuda=0"]
    assert slurm.LogFollower(logs["fakeb"]).read(final=True) == ["type=fakeb gpus=1 cuda=1"]
    assert seen_running == set(ids.values())
    assert time.monotonic() - t0 < 30


def test_unknown_gpu_type_refused_by_preflight(tools):
    with pytest.raises(KitError) as e:
        slurm.preflight(tools, gpu_types=["fakea", "nosuch"])
    msg = str(e.value)
    assert "unknown GPU type 'nosuch' in partition 'debug'" in msg
    assert "fakea, fakeb" in msg and "gpu:fakea:1, gpu:fakeb:1" in msg
    assert "\n" not in msg  # one paragraph


def test_slurm_itself_refuses_an_unknown_gpu_type(tools, jobs, tmp_path):
    # Without the preflight, sbatch's own refusal is still one KitError (the controller's reason in it).
    with pytest.raises(KitError) as e:
        jobs.append(slurm.submit(tools, "true\n", job_name="kit-test-nosuch", log_path=tmp_path / "x.log",
                                 sbatch_args=[slurm.gres_arg("nosuch")]))
    assert "Requested node configuration is not available" in str(e.value)
    assert slurm.sbatch_test_only(tools, [slurm.gres_arg("nosuch")]) == "Requested node configuration is not available"
    assert slurm.sbatch_test_only(tools, [slurm.gres_arg("fakeb")]) is None


def test_failing_job_paragraph_has_exit_code_and_log_tail(tools, jobs, tmp_path):
    log = tmp_path / "fail.log"
    script = "for i in $(seq 1 30); do echo line $i; done\necho 'Error: the model did not load' >&2\nexit 3\n"
    jid, st, _ = run_to_end(tools, jobs, script, log, name="kit-test-fail")
    assert (st.state, st.exit_code, st.signal) == ("FAILED", 3, None), st
    text = slurm.failure_paragraph("bench-hf on fakea", st, log)
    assert text.startswith(f"bench-hf on fakea: Slurm job {jid} ended FAILED with exit code 3 on node {st.node} "
                           "in partition debug;")
    assert str(log) in text
    tail = text.split(":\n", 1)[1].splitlines()
    assert len(tail) == 20 and tail[-1] == "    Error: the model did not load" and tail[0] == "    line 12"
    assert "line 11\n" not in text


def test_cancel_running_job_leaves_its_partial_file(tools, jobs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "cancel.log"
    # The cancel's SIGTERM reaches the shell and its sleep in either order; a shell that outlives its sleep would exit
    # 143 ("Terminated") and run the mv, so it ends itself the same way: the job always ends by signal 15. "started"
    # comes first, so it is in the log once row.partial exists.
    script = (f"echo started\necho partial > {out}/row.partial\nsleep 300 || kill -TERM $$\n"
              f"mv {out}/row.partial {out}/row.json\n")
    jid = slurm.submit(tools, script, job_name="kit-test-cancel", log_path=log)
    jobs.append(jid)
    deadline = time.monotonic() + 60
    while slurm.job_states(tools, [jid])[jid].state != "RUNNING" or not (out / "row.partial").exists():
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(POLL)
    t0 = time.monotonic()
    final = slurm.cancel(tools, [jid])
    st = final[jid]
    assert st.state == "CANCELLED" and st.signal == 15, st
    assert time.monotonic() - t0 < 15
    assert (out / "row.partial").read_text() == "partial\n" and not (out / "row.json").exists()
    text = slurm.failure_paragraph("bench-hf", st, log)
    assert f"ended CANCELLED by signal 15 on node {st.node}" in text and "it was cancelled" in text
    assert "started" in text and "CANCELLED AT" in text  # slurmstepd's own line in the log
    # cancelling again is harmless
    assert slurm.cancel(tools, [jid], wait_s=2)[jid].state == "CANCELLED"


def test_ctrl_c_during_wait_cancels_the_jobs(tools, jobs, tmp_path):
    logs = {}
    ids = []
    for t in ("fakea", "fakeb"):
        logs[t] = tmp_path / f"{t}.log"
        ids.append(slurm.submit(tools, "echo up\nsleep 300\n", job_name=f"kit-test-int-{t}", log_path=logs[t],
                                sbatch_args=[slurm.gres_arg(t)]))
    jobs.extend(ids)
    ids_log = dict(zip(ids, logs.values()))

    def on_event(e):  # Ctrl-C arrives once one job runs; the other may still be queued (a busy node): both go
        if e.kind == "log" and e.line == "up":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # what kit/runners/slurm.py does on Ctrl-C: scancel the jobs
        try:
            slurm.wait(tools, ids, on_event, log_paths=ids_log, poll_s=POLL, poll_max_s=4 * POLL, timeout_s=120)
        except KeyboardInterrupt:
            slurm.cancel(tools, ids)
            raise
    states = slurm.job_states(tools, ids)
    assert all(s.state == "CANCELLED" for s in states.values()), states  # the running one and the queued one


def test_preempted_job(tools, jobs, tmp_path):
    """A job of partition urgent (PriorityTier 2, PreemptMode=CANCEL) takes fakea from a running debug job."""
    log = tmp_path / "victim.log"
    victim = slurm.submit(tools, "echo victim up\nsleep 300\n", job_name="kit-test-victim", log_path=log,
                          sbatch_args=[slurm.gres_arg("fakea")])
    jobs.append(victim)
    deadline = time.monotonic() + 60
    while slurm.job_states(tools, [victim])[victim].state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(POLL)
    _, urgent, _ = run_to_end(tools, jobs, "echo urgent\n", tmp_path / "urgent.log",
                              args=["--partition=urgent", slurm.gres_arg("fakea")], name="kit-test-urgent")
    assert urgent.ok and urgent.partition == "urgent"
    st = slurm.wait(tools, [victim], poll_s=POLL, poll_max_s=4 * POLL, timeout_s=60)[victim]
    assert st.state == "PREEMPTED", st
    text = slurm.failure_paragraph("bench-hf on fakea", st, log)
    assert "ended PREEMPTED" in text and "a job of higher priority took its node" in text
    assert "DUE TO PREEMPTION" in text


def test_other_partition_and_unknown_ids(tools, jobs, tmp_path):
    jid, st, _ = run_to_end(tools, jobs, "echo on $SLURM_JOB_PARTITION\n", tmp_path / "u.log",
                            args=["--partition=urgent"])
    assert st.ok and st.partition == "urgent"
    assert slurm.LogFollower(tmp_path / "u.log").read(final=True) == ["on urgent"]
    # An id the controller never had (or forgot after MinJobAge): UNKNOWN, as there is no sacct in CI.
    gone = slurm.job_states(tools, ["999999999"])["999999999"]
    assert gone.state == "UNKNOWN" and gone.terminal and gone.source in ("missing", "sacct")
    both = slurm.job_states(tools, [jid, "999999998"])
    assert both[jid].state == "COMPLETED" and both["999999998"].state == "UNKNOWN"
