"""Slurm runner (`--runner slurm`, README "Running on a Slurm cluster"): one sbatch job per step and GPU type. Host
side, `run_slurm`: preflight, the ledger `<results>/.slurm/<spec hash>.json` (no second job for a spec without
--again), submit, follow, cancel on Ctrl-C. Node side, `node_main`: the step, its outcome recorded in the ledger."""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

from core.errors import KitError
from core.files import atomic_write_text
from core.workload import Parser
from kit import KIT_ROOT, slurm
from kit.runners import run_step
from kit.runners.base import RunnerOptions, Step

GPU_TYPE_ENV = "KIT_SLURM_GPU_TYPE"
POLL_S = float(os.environ.get("KIT_SLURM_POLL_S", "2"))  # the first interval between two looks at the queue;
POLL_MAX_S = float(os.environ.get("KIT_SLURM_POLL_MAX_S", "30"))  # doubled after each look that saw nothing new
ENDED = slurm.TERMINAL_STATES | {"INTERRUPTED"}  # ledger states of a job that ended (INTERRUPTED: the node's word)


def _type_list(text: str) -> list[str]:
    types = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))  # in order, once each
    if not types:
        raise argparse.ArgumentTypeError(f"expected GPU type names, comma-separated, got {text!r}")
    return types


# --NAME: its help and argparse's keywords.
OPTIONS = {
    "partition": ("partition to submit to (default: $SBATCH_PARTITION, else the cluster's default)", {}),
    "account": ("account to charge (default: $SBATCH_ACCOUNT, else yours)", {}),
    "time": ("time limit of each job (MINUTES, HH:MM:SS, D-HH:MM:SS; default: $SBATCH_TIMELIMIT, else the "
             "partition's)", {}),
    "constraint": ("node features the jobs need (default: $SBATCH_CONSTRAINT)", {}),
    "sbatch-arg": ("extra sbatch argument, repeatable, written with = (--sbatch-arg=--qos=high); after the kit's "
                   "own, so they win", {"action": "append", "metavar": "ARG"}),
    "gpu-types": ("the GPU-type matrix: one job per step and type, --gres=gpu:TYPE:1 (e.g. a100,h100,t4); default: "
                  "one job on any GPU (--gres=gpu:1), or no GPU for a --device cpu workload",
                  {"type": _type_list, "metavar": "A,B,..."}),
    "node-runner": ("how the job runs the step on its node: docker (the pinned image; default) or local (--python, "
                    "else .venv-<stack>/ in the checkout)", {"choices": ("docker", "local")}),
    "again": ("submit even when the same spec already has a pending, running or completed job",
              {"action": "store_true"}),
    "no-wait": ("print the job ids and their logs, and return; `nox -s report` assembles what arrived",
                {"action": "store_true"}),
}
# sbatch reads these from its own SBATCH_* variables, so the kit passes them only when given.
SBATCH_OPTIONS = ("partition", "account", "time", "constraint")


def add_slurm_args(p: argparse.ArgumentParser) -> None:
    """The Slurm options of the measuring commands (kit/cli.py `_runner_parser`)."""
    g = p.add_argument_group("--runner slurm (sbatch's own input variables, SBATCH_PARTITION, SBATCH_ACCOUNT, "
                             "SBATCH_TIMELIMIT, SBATCH_QOS, ..., apply to what is not given here)")
    for name, (text, kw) in OPTIONS.items():
        g.add_argument(f"--{name}", help=text, **kw)


# One attribute per option (None / False: not given; node_runner "docker" and gpu_types [] then), and sbatch_args:
# the user's part of every job's sbatch arguments, the options given, then the --sbatch-args.
SlurmOptions = SimpleNamespace


def slurm_options(ns: argparse.Namespace) -> Optional[SlurmOptions]:
    """The Slurm options of a parsed command line; None for another runner, where giving one is an error."""
    values = {d: getattr(ns, d, None) for d in (n.replace("-", "_") for n in OPTIONS)}
    if ns.runner != "slurm":
        given = [f"--{d.replace('_', '-')}" for d, v in values.items() if v]
        if given:
            raise KitError(f"{', '.join(given)} only apply to --runner slurm, and this run uses --runner "
                           f"{ns.runner}. Add --runner slurm, or leave them out.")
        return None
    sbatch_args = [f"--{n}={values[n]}" for n in SBATCH_OPTIONS if values[n]] + (values["sbatch_arg"] or [])
    return SlurmOptions(**{**values, "node_runner": values["node_runner"] or "docker",
                           "gpu_types": values["gpu_types"] or []}, sbatch_args=sbatch_args)


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def short_name(step: Step) -> str:
    """'transformers', 'vllm-awq', 'vllm-0.20-awq_marlin', 'profile': the step in a log prefix or file name."""
    if any("profile" in a for a in step.argv[:1]):
        return "profile"
    backend = step.argv[-1] if step.argv else step.stack
    q = step.workload.quantization if step.workload else None
    return f"{step.stack}-{q}" if backend == "vllm" and q else (step.stack if backend == "vllm" else backend)


@dataclass
class Job:
    step: Step
    gpu_type: Optional[str]  # None: any GPU (GPU workload) or none (CPU workload)
    wants_gpu: bool
    key: str  # the spec's hash
    spec: dict
    ledger: Path
    log: Optional[Path] = None
    job_id: Optional[str] = None
    adopted: bool = False  # submitted by an earlier run, followed by this one

    @property
    def kind(self) -> str:  # in the log lines' prefix and the file and job names
        return self.gpu_type or ("gpu" if self.wants_gpu else "cpu")

    @property
    def label(self) -> str:
        return f"{self.step.description or short_name(self.step)} on " \
            f"{self.gpu_type or ('any GPU' if self.wants_gpu else 'CPU')}"


def spec_of(step: Step, gpu_type: Optional[str], results_dir: Path) -> tuple[str, dict]:
    """(hash, spec): what makes two submissions the same: stack, entry point, workload, GPU type, results folder."""
    spec = {"stack": step.stack, "entry": list(step.argv),
            "workload": json.loads(step.workload.to_json()) if step.workload else None,
            "gpu_type": gpu_type, "results_dir": str(Path(results_dir).resolve())}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20], spec


def read_ledger(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def update_ledger(path: Path, changes: dict, *, only_job: Optional[str] = None) -> None:
    """Write the entry of a new submission (only_job None), or merge `changes` into the entry of job `only_job`, unless
    it is a newer submission's (a node must not overwrite that record); atomically."""
    entry = (read_ledger(path) or {}) if only_job is not None else {}
    if entry.get("job_id") not in (None, only_job):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {**entry, **changes, "updated_utc": _utc_now()}
    atomic_write_text(path, json.dumps(entry, indent=2, sort_keys=True) + "\n", mode=0o644)


def _record(job: Job, st: slurm.JobState) -> None:
    update_ledger(job.ledger, {"state": st.state, "exit_code": st.exit_code, "node": st.node or None},
                  only_job=st.job_id)


def previous_job(tools: slurm.SlurmTools, job: Job, again: bool = False) -> tuple[str, Optional[dict], str]:
    """('skip' | 'follow' | 'submit', ledger entry, one line saying why) for a job about to be submitted."""
    entry = read_ledger(job.ledger)
    if not entry or not entry.get("job_id"):
        return "submit", entry, ""
    jid, state = str(entry["job_id"]), str(entry.get("state") or "SUBMITTED")
    if again:
        return "submit", entry, f"--again: submitting it again (previous job {jid}, {entry.get('state', '?')})"
    if state not in ENDED:
        live = slurm.job_states(tools, [jid])[jid]
        if live.source == "missing":
            return "submit", entry, (f"previous job {jid} is no longer known to Slurm and recorded no outcome: "
                                     "submitting it again")
        state = live.state
        _record(job, live)
        if state not in ENDED:
            where = f" on node {live.node}" if live.node else ""
            return "follow", entry, f"already {state.lower()}: job {jid}{where}, submitted " \
                                    f"{entry.get('submitted_utc', '?')}"
    if state == "COMPLETED":
        when = entry.get("ended_utc") or entry.get("updated_utc", "?")
        return "skip", entry, f"already completed: job {jid} (COMPLETED, {when}); --again runs it again"
    return "submit", entry, f"previous job {jid} ended {state}: submitting it again"


def job_script(job: Job, opts: RunnerOptions, sopts: SlurmOptions, *, grace_s: float) -> str:
    python, q = sys.executable, shlex.quote
    cmd = [python, "-m", "kit", "step", "--runner", sopts.node_runner, "--results-dir", str(opts.results_dir),
           "--output-dir", str(opts.output_dir), "--ledger", str(job.ledger), "--interrupt-grace", f"{grace_s:g}"]
    for flag, value in (("--python", opts.python), ("--label", opts.label), ("--ca-bundle", opts.ca_bundle)):
        cmd += [flag, str(value)] if value else []
    return "\n".join([
        "#!/bin/bash",
        f"# awq-kit Slurm job: {job.label} (spec {job.key}; ledger {job.ledger})",
        "# The kit runs itself on the node, from the same checkout and interpreter as on the submitting machine.",
        "export PYTHONUNBUFFERED=1",
        f"export {GPU_TYPE_ENV}={q(job.gpu_type or '')}",
        f"cd {q(str(KIT_ROOT))} || {{ echo \"kit: node $(hostname -s) does not see the kit checkout "
        f"{KIT_ROOT}; put it on a filesystem the nodes share\" >&2; exit 2; }}",
        f"[ -x {q(python)} ] || {{ echo \"kit: node $(hostname -s) has no interpreter {python} (the one that "
        "submitted the job); put it on a filesystem the nodes share\" >&2; exit 2; }",
        "exec " + " ".join(map(q, [*cmd, "--step", job.step.to_json()])),
    ]) + "\n"


def _say(command: str, text: str, *, err: bool = False) -> None:
    print(f"[{command}] {text}", file=sys.stderr if err else sys.stdout, flush=True)


def plan_jobs(steps: Sequence[Step], opts: RunnerOptions, sopts: SlurmOptions) -> list[Job]:
    jobs = []
    for step in steps:
        for gpu_type in (sopts.gpu_types or [None]):
            key, spec = spec_of(step, gpu_type, opts.results_dir)
            jobs.append(Job(step, gpu_type, bool(gpu_type) or step.needs_gpu, key, spec,
                            opts.results_dir / ".slurm" / f"{key}.json"))  # hidden: the reports ignore it
    return jobs


def _submit(tools: slurm.SlurmTools, job: Job, partition: str, opts: RunnerOptions, sopts: SlurmOptions,
            grace_s: float, previous: Optional[dict]) -> None:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{short_name(job.step)}-{job.kind}"
    job.log = opts.output_dir / "slurm" / f"{name}-{stamp}-{job.key[:8]}.log"
    args = [f"--partition={partition}", *([slurm.gres_arg(job.gpu_type)] if job.wants_gpu else []),
            "--ntasks=1", "--export=ALL", *sopts.sbatch_args]
    job.job_id = slurm.submit(tools, job_script(job, opts, sopts, grace_s=grace_s), job_name=f"kit-{name}",
                              log_path=job.log, sbatch_args=args, workdir=KIT_ROOT)
    old = previous or {}
    last_job = {k: old.get(k) for k in ("job_id", "state", "submitted_utc", "node", "exit_code")}
    history = old.get("previous", []) + ([last_job] if old.get("job_id") else [])
    update_ledger(job.ledger, {
        "key": job.key, "spec": job.spec, "job_id": job.job_id, "state": "PENDING", "submitted_utc": _utc_now(),
        "log": str(job.log), "script": str(job.log.with_suffix(".sbatch")), "node_runner": sopts.node_runner,
        "sbatch_args": args, "node": None, "exit_code": None, "previous": history[-10:]})


def run_slurm(command: str, steps: Sequence[Step], opts: RunnerOptions, sopts: SlurmOptions) -> None:
    """Submit the steps as Slurm jobs and (unless --no-wait) follow them to the end. Raises KitError naming the
    jobs that did not complete, after every job has ended; KeyboardInterrupt after cancelling this run's jobs."""
    tools = slurm.find_slurm()
    if opts.python and os.sep in opts.python:
        opts.python = str(Path(opts.python).expanduser().absolute())  # the job starts in the checkout, not here
    jobs = plan_jobs(steps, opts, sopts)
    part = slurm.preflight(tools, partition=sopts.partition or os.environ.get("SBATCH_PARTITION"),
                           gpu_types=(sopts.gpu_types or [None]) if any(j.wants_gpu for j in jobs) else (),
                           sbatch_args=sopts.sbatch_args)
    decisions = [(job, *previous_job(tools, job, sopts.again)) for job in jobs]
    grace_s = 0.0
    if any(what == "submit" for _, what, _, _ in decisions):
        # Only now the probe job (seconds): the nodes must see where the jobs write and what they run.
        folders = [opts.results_dir, opts.output_dir] + ([KIT_ROOT] if os.access(KIT_ROOT, os.W_OK) else [])
        executables = [sys.executable] + ([opts.python] if opts.python and os.sep in opts.python
                                          and sopts.node_runner == "local" else [])
        slurm.check_visible(tools, folders, partition=part.name, sbatch_args=sopts.sbatch_args, executables=executables)
        # A cancelled job's kit has the cluster's KillWait (Slurm's default: 30 s) between SIGTERM and SIGKILL to stop
        # its container: a third of it (less 2 s) for the container after its SIGINT, as much again for `docker stop`.
        config = tools.run("scontrol", "show", "config", check=False).stdout if tools.scontrol else ""
        m = re.search(r"^KillWait\s*=\s*(\d+)", config, re.M)
        grace_s = max(1.0, (float(m.group(1) if m else 30) - 2.0) / 3.0)
    _say(command, f"--runner slurm: partition {part.name}, {len(jobs)} job(s), node runner {sopts.node_runner}")
    followed: list[Job] = []
    failures: list[str] = []  # one line per job that did not complete (sbatch refused it: the other jobs go on)
    latest: dict[str, slurm.JobState] = {}  # the last state seen of each job followed, for Ctrl-C
    try:
        for job, what, entry, why in decisions:
            if why:
                _say(command, f"{job.label}: {why}")
            if what != "submit":
                job.job_id, job.adopted = str(entry["job_id"]), True
                job.log = Path(entry["log"]) if entry.get("log") else None
                followed += [job] if what == "follow" else []
                continue
            try:
                _submit(tools, job, part.name, opts, sopts, grace_s, entry)
            except KitError as e:
                if len(decisions) == 1:
                    raise
                _say(command, f"{job.label}: not submitted: {e}", err=True)
                failures.append(f"{job.label} (not submitted: sbatch refused it)")
                continue
            _say(command, f"submitted job {job.job_id}: {job.label}; log {job.log}")
            followed.append(job)
        if followed and not sopts.no_wait:
            _follow(command, tools, followed, failures, latest)
    except KeyboardInterrupt:
        _interrupted(command, tools, followed, latest)  # this run's jobs are cancelled
        raise
    if not followed and not failures:
        _say(command, "nothing to run: every job of this spec has completed (--again runs them again)")
    elif sopts.no_wait and followed:
        ids = ",".join(j.job_id for j in followed)
        report = "nox -s report" + (f" -- --results-dir {opts.results_dir}"
                                    if opts.results_dir != (KIT_ROOT / "results").resolve() else "")
        _say(command, f"not waiting (--no-wait): job(s) {ids}; logs under {opts.output_dir / 'slurm'}. Follow "
                      f"them with `squeue -j {ids}`; once they have ended, `{report}` assembles what arrived, and "
                      "the same command again says what finished and resubmits what failed.")
    if failures:
        others = "; the others' results were written" if len(jobs) > len(failures) else ""
        raise KitError(f"{len(failures)} of {len(jobs)} Slurm job(s) did not complete (each one's paragraph with its "
                       f"state, exit code and log tail is above{others}): {'; '.join(failures)}. Submitting the same "
                       "command again resubmits only these.")


def _follow(command: str, tools: slurm.SlurmTools, jobs: list[Job], failures: list[str],
            latest: dict[str, slurm.JobState]) -> None:
    by_id = {j.job_id: j for j in jobs}

    def on_event(e: slurm.Event) -> None:
        latest[e.job_id] = e.state
        text = f"job {e.job_id} {e.state.summary()}" if e.kind == "state" else e.line
        print(f"[{short_name(by_id[e.job_id].step)}/{by_id[e.job_id].kind}] {text}", flush=True)

    final = slurm.wait(tools, list(by_id), on_event, log_paths={j.job_id: j.log for j in jobs if j.log},
                       poll_s=POLL_S, poll_max_s=POLL_MAX_S)
    for job in jobs:
        st = final[job.job_id]
        _record(job, st)
        if st.ok:
            _say(command, f"job {job.job_id} ({job.label}) COMPLETED on node {st.node or '?'}")
            continue
        print("\n" + slurm.failure_paragraph(f"{command} {job.label}", st, job.log or "(no log)") + "\n",
              file=sys.stderr, flush=True)
        failures.append(f"job {job.job_id} ({job.label}) {st.summary()}")


def _interrupted(command: str, tools: slurm.SlurmTools, jobs: list[Job], latest: dict[str, slurm.JobState]) -> None:
    """Ctrl-C: scancel this run's unfinished jobs (by id; an earlier run's are left alone) and say how each ended."""
    unfinished = {j.job_id for j in jobs if not (j.job_id in latest and latest[j.job_id].terminal)}
    own = [j.job_id for j in jobs if j.job_id in unfinished and not j.adopted]
    print("", file=sys.stderr, flush=True)
    if own:
        _say(command, f"interrupt: cancelling job(s) {', '.join(own)} (scancel by id) and waiting for them to end",
             err=True)
        try:
            latest.update(slurm.cancel(tools, own, wait_s=120))
        except KeyboardInterrupt:
            _say(command, "second interrupt: not waiting any longer; the jobs were cancelled (scancel)", err=True)
        except KitError as e:
            _say(command, f"could not cancel all jobs: {e}", err=True)
    for job in jobs:
        st = latest.get(job.job_id)
        if job.job_id in unfinished and job.adopted:
            _say(command, f"job {job.job_id} ({job.label}): left {st.state if st else 'running'} (submitted by an "
                          f"earlier run; `scancel {job.job_id}` cancels it)", err=True)
            continue
        if st is not None and st.terminal:
            _record(job, st)
        done = " (its result was written)" if st is not None and st.ok else ""
        _say(command, f"job {job.job_id} ({job.label}): {st.summary() if st else 'state unknown'}{done}", err=True)


def node_main(argv: list[str]) -> None:
    """`python -m kit step`: one step, run here; what a Slurm job of `--runner slurm` executes on its node."""
    p = Parser(prog="python -m kit step", description="Run one step here (the node side of --runner slurm).")
    p.add_argument("--runner", choices=("docker", "local"), required=True)
    p.add_argument("--step", type=Step.from_json, required=True, help="the step as JSON (kit.runners.Step.to_json)")
    p.add_argument("--python")
    p.add_argument("--results-dir", type=Path, required=True)
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--label")
    p.add_argument("--ca-bundle", type=Path)
    p.add_argument("--ledger", type=Path, help="the spec's ledger entry: the node records the job's outcome there")
    p.add_argument("--interrupt-grace", dest="interrupt_grace_s", metavar="INTERRUPT_GRACE", type=float,
                   default=RunnerOptions.interrupt_grace_s,
                   help="docker runner: seconds the container gets after SIGINT when the job is cancelled")
    ns = vars(p.parse_args(argv))  # the other options are RunnerOptions' fields
    step, ledger = ns.pop("step"), ns.pop("ledger")
    opts = RunnerOptions(**{k: v.resolve() if isinstance(v, Path) else v for k, v in ns.items()})
    # Slurm cancels, times out and preempts a job with SIGTERM to every process of it: handled like Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.default_int_handler)
    job_id = os.environ.get("SLURM_JOB_ID")
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    gpus = os.environ.get("SLURM_JOB_GPUS")
    if opts.runner == "docker" and gpus:
        # The container is not in the job's cgroup: docker --gpus all shows it every GPU of the node, so it gets
        # the job's GPUs by their node-wide index (SLURM_JOB_GPUS), not CUDA_VISIBLE_DEVICES as set in the job.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    print(f"[slurm] job {job_id or '(none)'} on node {node}, partition {os.environ.get('SLURM_JOB_PARTITION', '?')}, "
          f"GPU type {os.environ.get(GPU_TYPE_ENV) or ('any' if gpus else 'none')}{f' (GPU {gpus})' if gpus else ''}: "
          f"{step.description or short_name(step)}, {opts.runner} runner", flush=True)
    state, code = "COMPLETED", 0
    try:
        run_step(step, opts)
    except BaseException as e:  # KeyboardInterrupt: SIGTERM from Slurm (cancelled, timed out, preempted) or SIGINT
        interrupted = isinstance(e, KeyboardInterrupt)
        state, code = ("INTERRUPTED", 130) if interrupted else ("FAILED", getattr(e, "exit_code", 1))
        raise
    finally:
        if ledger and job_id:
            try:
                update_ledger(ledger, {"state": state, "exit_code": code, "node": node, "recorded_by": f"node {node}",
                                       "ended_utc": _utc_now()}, only_job=job_id)
            except OSError as e:
                print(f"[slurm] could not record the outcome in {ledger}: {e}", file=sys.stderr, flush=True)
