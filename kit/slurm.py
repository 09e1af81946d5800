"""Slurm mechanics for `--runner slurm` (host side, stdlib only): preflight, submit, follow, cancel, explain, all
through Slurm's own commands on PATH. README "Running on a Slurm cluster" says what each means to the user."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence, Union

from core.errors import KitError, one_line
from core.files import atomic_write_text

PathLike = Union[str, os.PathLike]

# Terminal states (squeue/sacct long names). A job that is PREEMPTED and requeued goes back to PENDING instead.
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
                             "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT", "UNKNOWN"})
_SQUEUE_FIELDS = ("JobID", "State", "Reason", "NodeList", "Partition", "exit_code", "Name")  # Name last: may hold '|'
_SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "NodeList", "Partition", "JobName")
_SACCT_DISABLED: set[str] = set()  # sacct commands that said the cluster keeps no accounting: not asked again
_HINTS = {
    "FAILED": "the job's command exited with a non-zero status",
    "TIMEOUT": "it ran past its time limit (sbatch --time); give it a longer one",
    "PREEMPTED": "a job of higher priority took its node; submit it again, or use a partition without preemption",
    "NODE_FAIL": "its node failed or stopped answering the controller; submit it again",
    "BOOT_FAIL": "its node could not be booted; submit it again",
    "OUT_OF_MEMORY": "it used more memory than it was given (sbatch --mem)",
    "CANCELLED": "it was cancelled (scancel, by you, the kit on Ctrl-C, or an administrator)",
    "DEADLINE": "it could not finish before its --deadline",
    "UNKNOWN": "the controller no longer knows the job and the cluster keeps no accounting (sacct) to ask",
}
_ALLOCATION_VARS = ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_ID", "SLURM_STEPID")
_PROBE_VARS = ("ACCOUNT", "QOS", "RESERVATION", "CONSTRAINT", "WCKEY", "CLUSTERS")  # SBATCH_X -> srun's SLURM_X
_NOT_FOR_PROBE = ("--gres", "--gpus", "--gpu", "--time", "--mem", "--cpus-per", "--ntasks", "--nodes", "--job-name",
                  "--output", "--error", "--chdir", "--wrap", "--array")


class SlurmError(KitError):
    """A Slurm command failed or did not answer."""


class SlurmTools(NamedTuple):
    sbatch: str
    squeue: str
    scancel: str
    sinfo: str
    srun: Optional[str] = None
    sacct: Optional[str] = None
    scontrol: Optional[str] = None

    def run(self, tool: str, *args: str, timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
        path = getattr(self, tool)  # the optional ones (srun, sacct, scontrol) are checked by their callers
        try:
            r = subprocess.run([path, *args], capture_output=True, text=True, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"`{tool} {' '.join(args)}` did not answer within {timeout:.0f}s: the Slurm controller "
                             "(slurmctld) is overloaded or unreachable. Try again later, or ask the cluster's "
                             "administrators (`scontrol ping` says whether it answers).") from None
        except OSError as e:
            raise SlurmError(f"could not run {path}: {e}") from None
        if check and r.returncode != 0:
            raise SlurmError(f"`{tool} {' '.join(args)}` failed (exit code {r.returncode}): {one_line(r.stderr)}")
        return r


def find_slurm(path: Optional[str] = None) -> SlurmTools:
    """The Slurm client commands on PATH (or `path`); KitError if one is missing or `sinfo` gets no answer."""
    found = {f: shutil.which(f, path=path) for f in SlurmTools._fields}
    sbatch = found["sbatch"]
    if not sbatch:
        raise KitError("--runner slurm: there is no `sbatch` on PATH, so no job can be submitted from here. Run the kit"
                       " on a login node of the cluster (after `module load slurm` where it uses modules), or put "
                       "Slurm's client commands on PATH (Debian: slurm-client); or use --runner docker or local.")
    if missing := [n for n in ("squeue", "scancel", "sinfo") if not found[n]]:
        raise KitError(f"--runner slurm: `sbatch` is at {sbatch} but {', '.join(missing)} "
                       f"{'is' if len(missing) == 1 else 'are'} not on PATH; the kit needs them to follow and cancel "
                       "its jobs. Put the whole set of Slurm client commands on PATH.")
    tools = SlurmTools(**found)
    r = tools.run("sinfo", "-h", "-o", "%P", check=False)
    if r.returncode != 0:
        raise KitError(f"--runner slurm: `sbatch` is at {sbatch}, but the Slurm controller does not answer (`sinfo` "
                       f"exit code {r.returncode}: {one_line(r.stderr)}). Check this machine's slurm.conf and munge, "
                       "and that slurmctld is up: `scontrol ping`.")
    return tools


class Partition(NamedTuple):
    name: str
    default: bool
    available: bool  # sinfo %a: up
    gres: tuple[str, ...]  # e.g. ("gpu:a100:4(S:0-1)", "gpu:t4:2")

    def gpu_types(self) -> set[str]:
        return {t for (n, t, _c) in map(parse_gres, self.gres) if n == "gpu" and t}


def split_gres(text: str) -> list[str]:
    """Split sinfo's %G column at commas outside parentheses: 'gpu:a:4(S:0,1),gpu:b:1' -> two items."""
    return [i.strip() for i in re.split(r",(?![^()]*\))", text.strip()) if i.strip() and i.strip() != "(null)"]


def parse_gres(item: str) -> tuple[str, Optional[str], int]:
    """'gpu:a100:4(S:0-1)' -> ('gpu', 'a100', 4); 'gpu:2' -> ('gpu', None, 2); 'gpu' -> ('gpu', None, 1)."""
    name, *rest = re.sub(r"\(.*\)$", "", item.strip()).split(":")
    m = re.fullmatch(r"(\d+)([KMGTP]?)", rest[-1]) if rest else None
    count = int(m.group(1)) * 1024 ** " KMGTP".index(m.group(2) or " ") if m else 1
    return name, ":".join(rest[:-1] if m else rest) or None, count


def partitions(tools: SlurmTools) -> dict[str, Partition]:
    """Every partition sinfo shows (hidden ones too: `sinfo -a`), with the gres its nodes offer."""
    found: dict[str, Partition] = {}
    for line in filter(str.strip, tools.run("sinfo", "-h", "-a", "-o", "%P|%a|%G").stdout.splitlines()):
        name, avail, gres = (line.split("|", 2) + ["", ""])[:3]
        p = found.get(name.rstrip("*")) or Partition(name.rstrip("*"), False, False, ())
        found[p.name] = Partition(p.name, p.default or name.endswith("*"), p.available or avail.strip() == "up",
                                  tuple(dict.fromkeys(p.gres + tuple(split_gres(gres)))))
    return found


def gres_arg(gpu_type: Optional[str]) -> str:
    """The sbatch argument for one GPU of a type (None: any GPU): '--gres=gpu:a100:1' / '--gres=gpu:1'."""
    return f"--gres=gpu:{gpu_type}:1" if gpu_type else "--gres=gpu:1"


def check_gpu_types(part: Partition, gpu_types: Sequence[Optional[str]]) -> list[str]:
    """One paragraph per requested GPU type (None: any GPU) that the partition's nodes do not offer."""
    gres_text = ", ".join(part.gres) or "none"
    if gpu_types and not sum(c for (n, _t, c) in map(parse_gres, part.gres) if n == "gpu"):
        return [f"--runner slurm: partition {part.name!r} has no GPUs (the generic resources of its nodes: "
                f"{gres_text}), so no job asking for {gres_arg(gpu_types[0])} can run there. Pick a partition with "
                "GPUs (`sinfo -o '%P %G'` lists them)."]
    offered = ", ".join(sorted(part.gpu_types())) or "(none: untyped GPUs only; leave --gpu-types out)"
    return [f"--runner slurm: unknown GPU type {t!r} in partition {part.name!r}: its nodes offer {gres_text}, i.e. "
            f"the types {offered}. --gpu-types takes those type names (the middle part of gpu:TYPE:COUNT in "
            f"`sinfo -p {part.name} -o %G`)." for t in gpu_types if t is not None and t not in part.gpu_types()]


def sbatch_test_only(tools: SlurmTools, sbatch_args: Sequence[str]) -> Optional[str]:
    """`sbatch --test-only` (nothing is queued): None if the controller would run the job, else Slurm's reason."""
    r = tools.run("sbatch", "--test-only", *sbatch_args, "--wrap", "true", check=False)
    if r.returncode == 0:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines() if ln.startswith("allocation failure:")),
                None) or one_line(r.stderr)


def preflight(tools: SlurmTools, *, partition: Optional[str] = None, gpu_types: Sequence[Optional[str]] = (None,),
              sbatch_args: Sequence[str] = ()) -> Partition:
    """The partition (None: the cluster's default), the GPU types (None = any GPU; () for a CPU-only job) and
    `sbatch --test-only` of each with `sbatch_args`, all instant; KitError with one paragraph per problem."""
    parts = partitions(tools)
    known = ", ".join(f"{p.name}{' (default)' if p.default else ''}" for p in parts.values()) or "none"
    name = partition or next((p.name for p in parts.values() if p.default), None)
    if name is None:
        raise KitError(f"--runner slurm: the cluster has no default partition, so the kit needs one named "
                       f"(--partition); the partitions `sinfo` shows are: {known}.")
    if name not in parts:
        raise KitError(f"--runner slurm: unknown partition {name!r}: the partitions `sinfo` shows are: {known}. "
                       "Pick one of them with --partition (or leave it out for the cluster's default).")
    part = parts[name]
    problems = [] if part.available else [
        f"--runner slurm: partition {part.name!r} is not up (`sinfo -p {part.name}` shows it down, drained or "
        "inactive), so jobs would wait there indefinitely. Pick another one with --partition, or ask the cluster's "
        "administrators."]
    problems += check_gpu_types(part, gpu_types)
    for t in ([] if problems else (gpu_types or [None])):
        args = [f"--partition={part.name}", *([gres_arg(t)] if gpu_types else []), *sbatch_args]
        why = sbatch_test_only(tools, args)
        if why:
            problems.append(f"--runner slurm: the controller would not run a job with `sbatch {' '.join(args)}`: "
                            f"{why}. (Checked with `sbatch --test-only`; nothing was submitted.)")
    if problems:
        raise KitError("\n\n".join(problems))
    return part


# sh -c SCRIPT sh TOKEN PROBE1 REPLY1 PROBE2 REPLY2 ... -- EXE1 EXE2 ...
_PROBE_SCRIPT = ('tok=$1; shift; rc=0; while [ $# -gt 0 ] && [ "$1" != -- ]; do '
                 'if [ "$(cat "$1" 2>&1)" = "$tok" ]; then echo "$tok" > "$2" || rc=1; '
                 'else echo "KIT-PROBE-NOT-SEEN $1 on $(hostname): $(cat "$1" 2>&1)"; rc=1; fi; '
                 'shift 2; done; [ $# -gt 0 ] && shift; for x in "$@"; do '
                 '[ -x "$x" ] && [ -f "$x" ] || { echo "KIT-PROBE-NO-EXE $x"; rc=1; }; done; exit $rc')


def check_visible(tools: SlurmTools, folders: Sequence[PathLike], *, partition: Optional[str] = None,
                  sbatch_args: Sequence[str] = (), timeout_s: float = 120, executables: Sequence[str] = ()) -> None:
    """KitError unless a compute node sees `folders` as this machine does and has `executables`: ONE srun job (1 CPU,
    1 minute, on the node it lands on) reads back a random token written into each folder and writes a reply beside
    it, so a missing path, a node-local folder of the same name and a read-only mount all fail (srun brings its output
    back even when nothing is shared). It takes the `sbatch_args` about where and how it is charged (--opt=value)."""
    if not tools.srun:
        raise KitError("--runner slurm: `srun` is not on PATH, so the kit cannot check that the compute nodes see "
                       f"the results folder ({', '.join(map(str, folders))}).")
    token, where = secrets.token_hex(8), f"srun on partition {partition or '(default)'}"
    dirs = [Path(f).resolve() / f".kit-probe-{token}" for f in folders]  # the token and the reply in each
    try:
        for d in dirs:
            try:
                d.mkdir(parents=True)
                (d / "token").write_text(token + "\n")
            except OSError as e:
                raise KitError(f"--runner slurm: cannot write into {d.parent} on this machine ({e.strerror}), so the "
                               "jobs could not deliver results there either; pick a folder you can write.") from None
        args = ["--job-name", f"kit-probe-{token}", "--nodes=1", "--ntasks=1", "--time=1", "--chdir=/", "--quiet",
                *([f"--partition={partition}"] if partition else []),
                *(a for a in sbatch_args if not a.startswith(_NOT_FOR_PROBE)), "sh", "-c", _PROBE_SCRIPT, "sh",
                token, *(str(d / n) for d in dirs for n in ("token", "reply")), "--", *executables]
        # A new job even when the kit itself runs inside an allocation (salloc, or a batch job): srun would
        # otherwise start a step of that job, on its node, not on the partition asked for.
        # srun reads SLURM_ACCOUNT, ... where sbatch reads SBATCH_ACCOUNT, ...: the probe is charged the same way.
        env = {k: v for k, v in os.environ.items() if k not in _ALLOCATION_VARS}
        env.update({f"SLURM_{k}": os.environ[f"SBATCH_{k}"] for k in _PROBE_VARS
                    if f"SBATCH_{k}" in os.environ and f"SLURM_{k}" not in os.environ})
        try:
            r = tools.run("srun", *args, timeout=timeout_s, check=False, stdin=subprocess.DEVNULL, env=env)
        except SlurmError:
            tools.run("scancel", "--name", f"kit-probe-{token}", check=False)
            raise KitError(f"--runner slurm: the probe job that checks that the compute nodes see "
                           f"{', '.join(map(str, folders))} did not run within {timeout_s:.0f}s ({where}: "
                           "busy?); it was cancelled and nothing was concluded.") from None
        lines = (r.stdout + "\n" + r.stderr).splitlines()
        replies = {d: (d / "reply").read_text().strip() if (d / "reply").is_file() else "" for d in dirs}
        if blind := [str(d.parent) for d in dirs if replies[d] != token]:
            detail = [ln.replace("KIT-PROBE-NOT-SEEN ", "") for ln in lines if "KIT-PROBE-NOT-SEEN" in ln]
            raise KitError(
                f"--runner slurm: the compute node does not see the folder{'s' if len(blind) > 1 else ''} "
                f"{', '.join(blind)} the way this machine does, so a job's results and log would not arrive here. A "
                f"probe job ({where}) could not read back the token written there"
                f"{' or write its reply' if r.returncode == 0 else ''}: "
                f"{'; '.join(detail) or one_line(' '.join(lines))}. Put the results and log folders on a filesystem "
                "the nodes share with this machine (the home or project filesystem, not /tmp or a local disk), e.g. "
                "--results-dir $HOME/awq-results --output-dir $HOME/awq-output.")
        if missing := [ln.split("KIT-PROBE-NO-EXE ", 1)[1].strip() for ln in lines if "KIT-PROBE-NO-EXE " in ln]:
            raise KitError(
                f"--runner slurm: the compute node has no executable {', '.join(missing)} (a probe job, {where}, found "
                "none); the jobs run the kit there with this interpreter, and the local node runner with --python. Put "
                "it on a filesystem the nodes share (e.g. run the kit through nox from a checkout in your home folder: "
                "its venv is under .nox/), or give a path that exists on the nodes.")
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def submit(tools: SlurmTools, script_text: str, *, job_name: str, log_path: PathLike,
           sbatch_args: Sequence[str] = (), workdir: Optional[PathLike] = None) -> str:
    """Submit one batch job; returns its id. The script, kept beside the log (.sbatch) as the record, is copied to the
    controller: only the log must be shared. It runs in `workdir` (default: the log's folder); `sbatch_args` win."""
    log_path = Path(log_path).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    script = log_path.with_suffix(".sbatch")
    atomic_write_text(script, ("" if script_text.startswith("#!") else "#!/bin/bash\n") + script_text, mode=0o755)
    out = str(log_path).replace("%", "%%")  # sbatch expands %j, %N, ... in --output
    args = ["--parsable", f"--job-name={job_name}", f"--output={out}",
            f"--chdir={Path(workdir).resolve() if workdir else log_path.parent}", *sbatch_args, str(script)]
    r = tools.run("sbatch", *args, check=False)
    if r.returncode != 0:
        raise KitError(f"--runner slurm: sbatch refused {job_name!r} (exit code {r.returncode}): "
                       f"{one_line(r.stderr)} (arguments: {' '.join(args[:-1])}; script {script}).")
    job_id = r.stdout.strip().splitlines()[-1].split(";")[0].strip() if r.stdout.strip() else ""
    if not re.fullmatch(r"\d+(_\d+)?", job_id):
        raise KitError(f"--runner slurm: sbatch accepted {job_name!r} but printed no job id: {r.stdout!r}")
    return job_id


class JobState(NamedTuple):
    job_id: str
    state: str  # PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ..., UNKNOWN
    exit_code: Optional[int] = None  # the command's exit status once the job ended (None before)
    signal: Optional[int] = None  # the signal that ended it, if one did (e.g. 15 after scancel)
    reason: str = ""  # squeue's reason: Priority, Resources, NonZeroExitCode, TimeLimit, ... ('' for None)
    node: str = ""
    partition: str = ""
    name: str = ""
    source: str = "squeue"  # squeue | sacct | missing

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED" and not self.exit_code and not self.signal

    def summary(self) -> str:
        return ", ".join([self.state] + [f"{k} {v}" for k, v in (
            ("exit code", self.exit_code if self.terminal else None), ("signal", self.signal or None),
            ("reason", self.reason or None), ("node", self.node or None)) if v is not None])


def _wait_status(raw: str) -> tuple[Optional[int], Optional[int]]:
    """squeue's exit_code is the raw wait status: 768 -> (3, None), 15 -> (0, 15)."""
    return ((int(raw) >> 8) & 0xFF, (int(raw) & 0x7F) or None) if raw.isdigit() else (None, None)


def job_states(tools: SlurmTools, ids: Iterable[str]) -> dict[str, JobState]:
    """{id: JobState} for every id; an ended one from sacct where there is accounting (squeue forgets it after
    MinJobAge), a job neither knows UNKNOWN (source "missing"). SlurmError if squeue fails."""
    ids = [str(i) for i in ids]
    if not ids:
        return {}
    fmt = ",".join(f"{f}:|" for f in _SQUEUE_FIELDS)
    r = tools.run("squeue", "-h", "--states=all", "-j", ",".join(ids), "-O", fmt, check=False)
    if r.returncode != 0 and "Invalid job id" not in r.stderr:
        raise SlurmError(f"`squeue -j {','.join(ids)}` failed (exit code {r.returncode}): {one_line(r.stderr)}")
    found: dict[str, JobState] = {}
    for jid, state, reason, node, part, raw, name in _rows(r.stdout, _SQUEUE_FIELDS, ids):
        code, sig = _wait_status(raw) if state in TERMINAL_STATES or state == "COMPLETING" else (None, None)
        found[jid] = JobState(jid, state, code, sig, reason, node, part, name.removesuffix("|"))
    ended = [i for i in ids if i not in found or found[i].terminal]
    if ended and tools.sacct and tools.sacct not in _SACCT_DISABLED:
        r = tools.run("sacct", "-n", "-P", "-X", "-j", ",".join(ended), "-o", ",".join(_SACCT_FIELDS), check=False)
        if r.returncode != 0 and "accounting storage is disabled" in (r.stderr + r.stdout).lower():
            _SACCT_DISABLED.add(tools.sacct)
        for jid, state, raw, node, part, name in _rows(r.stdout if r.returncode == 0 else "", _SACCT_FIELDS, ended):
            m = re.fullmatch(r"(\d+):(\d+)", raw)
            code, sig = (int(m.group(1)), int(m.group(2)) or None) if m else (None, None)
            if state in TERMINAL_STATES or jid not in found:  # sacct lags behind squeue for a moment after the end
                found[jid] = JobState(jid, state, code if state in TERMINAL_STATES else None, sig,
                                      found[jid].reason if jid in found else "", node, part, name, "sacct")
    return {i: found.get(i) or JobState(i, "UNKNOWN", reason="not known to squeue, and no accounting (sacct) to ask",
                                        source="missing") for i in ids}


def _rows(text: str, fields: Sequence[str], ids: Sequence[str]) -> Iterator[list[str]]:
    """The |-separated lines about `ids`, '' for None, (null), N/A, the state (second) as its first word."""
    for parts in (line.split("|", len(fields) - 1) for line in text.splitlines()):
        if len(parts) == len(fields) and parts[0].strip() in ids:
            jid, state, *rest = ("" if p.strip() in ("None", "(null)", "N/A") else p.strip() for p in parts)
            yield [jid, (state.upper().split() or ["UNKNOWN"])[0], *rest]


@dataclass
class LogFollower:
    """tail -f for one log on a shared filesystem: new complete lines since the last call. The file may appear late
    (a pending job) or start over (a requeued job's log is truncated: read again from the start)."""
    path: PathLike
    offset: int = 0
    partial: bytes = b""

    def read(self, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                if fh.seek(0, os.SEEK_END) < self.offset:
                    self.offset, self.partial = 0, b""
                fh.seek(self.offset)
                data = fh.read()
                self.offset = fh.tell()
        except OSError:
            data = b""
        *complete, self.partial = (self.partial + data).split(b"\n")
        if final and self.partial:
            complete.append(self.partial)
            self.partial = b""
        # A progress bar rewrites its line with \r: keep what the line last said.
        return [c.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1] for c in complete]


class Event(NamedTuple):
    kind: str  # "state": the job's state changed (the first one seen included); "log": a new line of its log
    job_id: str
    state: JobState
    line: str = ""


def wait(tools: SlurmTools, ids: Sequence[str], on_event: Callable[[Event], None] = lambda e: None, *,
         log_paths: Optional[Mapping[str, PathLike]] = None, poll_s: float = 2.0, poll_max_s: float = 30.0,
         timeout_s: Optional[float] = None) -> dict[str, JobState]:
    """Follow jobs until each is terminal (one squeue call per poll, backing off as README says): {id: final JobState}.
    `on_event` gets a state Event when a job's state, reason or node changes and a log Event per new line of its log
    (`log_paths`, read to its end before a job's terminal Event); squeue retried 5 min; SlurmError past `timeout_s`."""
    ids = [str(i) for i in ids]
    followers = {str(i): LogFollower(p) for i, p in (log_paths or {}).items()}
    last: dict[str, JobState] = {}
    t0 = last_ok = time.monotonic()
    interval = poll_s
    while True:
        todo = [i for i in ids if i not in last or not last[i].terminal]
        try:
            states = job_states(tools, todo)
            last_ok = time.monotonic()
        except SlurmError:
            if time.monotonic() - last_ok > 300:
                raise
            states = {}  # the last known states stand while squeue does not answer
        news = False
        for i in todo:
            st, prev = states.get(i) or last.get(i), last.get(i)
            if st is None:
                continue
            changed = prev is None or (prev.state, prev.reason, prev.node) != (st.state, st.reason, st.node)
            last[i] = st
            if changed and not st.terminal:
                on_event(Event("state", i, st))
            lines = followers[i].read(final=st.terminal) if i in followers else []
            for line in lines:
                on_event(Event("log", i, st, line))
            if st.terminal:  # after the last lines of its log
                on_event(Event("state", i, st))
            news = news or changed or bool(lines)
        todo = [i for i in ids if i not in last or not last[i].terminal]
        if not todo:
            return {i: last[i] for i in ids}
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            running = ", ".join(f"{i} ({last[i].state if i in last else '?'})" for i in todo)
            raise SlurmError(f"--runner slurm: gave up waiting after {timeout_s:.0f}s for job(s) {running}; "
                             "they are still in the queue (scancel them, or look again later).")
        interval = poll_s if news else min(interval * 2, max(poll_s, poll_max_s))
        time.sleep(interval)


def cancel(tools: SlurmTools, ids: Sequence[str], *, wait_s: float = 30) -> dict[str, JobState]:
    """scancel the jobs (by id: only the kit's own); their last states once terminal, or after wait_s."""
    if not ids:
        return {}
    tools.run("scancel", *map(str, ids), check=False)
    last: dict[str, JobState] = {}
    try:
        return wait(tools, ids, lambda e: last.update({e.job_id: e.state}), poll_s=0.5, poll_max_s=0.5,
                    timeout_s=wait_s)
    except SlurmError:  # still not ended after wait_s, or squeue did not answer
        return last


def failure_paragraph(job: str, state: JobState, log_path: PathLike) -> str:
    """A job that did not complete: how it ended (state, exit code or signal, reason), where, and its log's tail."""
    how = [f"ended {state.state}"] + ([f"with exit code {state.exit_code}"] if state.exit_code is not None
                                      and (state.exit_code or not state.signal) else [])
    how += [f"{'and' if len(how) > 1 else 'by'} signal {state.signal}"] if state.signal else []
    how += [f"on node {state.node}"] * bool(state.node) + [f"in partition {state.partition}"] * bool(state.partition)
    text = f"{job}: Slurm job {state.job_id} {' '.join(how)}"
    text += f" (reason: {state.reason})" if state.reason and state.reason != "NonZeroExitCode" else ""
    text += f"; {_HINTS[state.state]}." if state.state in _HINTS else "."
    try:  # the last 20 lines, of the last 256 KiB
        tail = LogFollower(log_path, max(0, os.path.getsize(log_path) - 256 * 1024)).read(final=True)[-20:]
    except OSError:
        return text + (f" Its log {log_path} does not exist here: the job never started, or the node wrote it to a "
                       "folder this machine does not see.")
    if not tail:
        return text + f" Its log {log_path} is empty."
    return text + f" The last {len(tail)} lines of its log {log_path}:\n" + "\n".join(f"    {ln}" for ln in tail)
