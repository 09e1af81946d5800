"""The results format (docs/results-format.md): one versioned JSON file per run, checked and written atomically by
the container side (`write_result`), read back by the host side (`load_result`)."""
from __future__ import annotations

import json
import math
import statistics
from itertools import repeat
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field, ValidationError

from core.engine_samples import EngineSamples, Strict, engine_problems
from core.files import atomic_write_text

# 2: samples.engine is typed (EngineSamples) and holds raw timestamps only; version 1 stored derived intervals
# beside them. tools/migrate_results.py converts a version 1 file.
SCHEMA_VERSION = 2
FORMAT_NAME = "awq-kit-result"


class Stats(Strict):
    """Summary statistics of one sample list, in milliseconds."""

    n: int = Field(ge=0)
    median: float
    mean: float
    p90: float
    p99: float
    std: float
    min: float
    max: float


class Workload(Strict):
    """What was run. Identical for every backend of one comparison."""

    model: str = Field(description="hub id, or the local path / synthetic config name")
    revision: Optional[str] = Field(None, description="revision asked for (hub models)")
    resolved_revision: Optional[str] = Field(None, description="commit actually loaded (hub models)")
    model_source: Literal["hub", "local", "synthetic"]
    synthetic: bool
    synthetic_config: Optional[str] = None
    input_len: int = Field(ge=1)
    output_len: int = Field(ge=1)
    batch_size: int = Field(1, ge=1)
    warmup: int = Field(ge=0)
    iterations: int = Field(ge=1)
    seed: int


class Backend(Strict):
    """Which engine ran and how it was configured."""

    name: Literal["transformers", "vllm"]
    label: str = Field(description='report column: "transformers", "vLLM (awq)", "vLLM (awq_marlin)"')
    quantization: str
    dtype: str
    device: Literal["cuda", "cpu"]
    # Free-form but recorded: kernel path, grad mode, enforce_eager, compilation mode, max_model_len ...
    settings: dict[str, Any] = Field(default_factory=dict)


class GPU(Strict):
    name: str
    memory_total_mib: Optional[int] = None
    driver: Optional[str] = None
    cuda_runtime: Optional[str] = None
    compute_capability: Optional[str] = None
    uuid: Optional[str] = Field(None, description="nvidia-ml-py's GPU UUID: tells one card from another of a model")


class HostRecord(Strict):
    """The machine a run measured on: what moves a launch-bound row besides the GPU."""

    cpu_model: Optional[str] = Field(None, description="/proc/cpuinfo 'model name'")
    cpu_cores: Optional[int] = Field(None, description="logical CPUs of the machine (os.cpu_count())")
    hostname: Optional[str] = None
    boot_id: Optional[str] = Field(None, description="/proc/sys/kernel/random/boot_id: one boot of the machine")


class GPUState(Strict):
    """The GPU's clocks and limits at one moment (nvidia-ml-py), read, never set."""

    sm_clock_mhz: Optional[int] = None
    mem_clock_mhz: Optional[int] = None
    power_limit_w: Optional[float] = None
    power_draw_w: Optional[float] = None
    temperature_c: Optional[int] = None
    pstate: Optional[int] = None


class LaunchProbe(Strict):
    """Kernel-launch latency measured right before the measured iterations, on the same GPU."""

    empty_kernel_launch_us: float = Field(gt=0, description="median per launch of 1,000 empty kernels, one sync")
    graph_replay_us: Optional[float] = Field(None, gt=0, description="median replay of a tiny CUDA graph, synced")
    method: str


class RunConditions(Strict):
    """What the GPU and host looked like around the measured iterations of one run."""

    gpu_start: Optional[GPUState] = Field(None, description="right before the first measured iteration")
    gpu_end: Optional[GPUState] = Field(None, description="right after the last measured iteration")
    launch_probe: Optional[LaunchProbe] = None
    notes: list[str] = Field(default_factory=list, description="why a part is missing (no nvidia-ml-py, CPU run)")


class SlurmJob(Strict):
    """The Slurm job a result was measured in (`--runner slurm`), read from the job's environment."""

    job_id: str = Field(description="SLURM_JOB_ID")
    node: Optional[str] = Field(None, description="SLURMD_NODENAME: the node the job ran on")
    partition: Optional[str] = Field(None, description="SLURM_JOB_PARTITION")
    gpu_type: Optional[str] = Field(None, description="the GPU type asked for (--gpu-types); None: any GPU, or none")


class Provenance(Strict):
    kit_commit: Optional[str] = None
    kit_dirty: Optional[bool] = None
    runner: Literal["docker", "local"]
    image_id: Optional[str] = None
    image_tag: Optional[str] = None
    lock_hash: Optional[str] = None
    python: str
    platform: str
    libraries: dict[str, Optional[str]] = Field(description="versions read inside the environment")
    pins: dict[str, str] = Field(default_factory=dict, description="versions the stack pins: its whole lock")
    pins_source: Optional[str] = Field(None, description="where the pins come from, e.g. images/hf/requirements.lock")
    deviations: list[str] = Field(default_factory=list, description="pinned packages whose installed version differs")
    gpu: Optional[GPU] = Field(None, description="None on a CPU run")
    label: Optional[str] = Field(None, description="free text, e.g. 'reference run'")
    slurm: Optional[SlurmJob] = Field(None, description="the Slurm job that ran it (--runner slurm); None otherwise")
    host: Optional[HostRecord] = Field(None, description="the measuring machine (None in older results)")


class Roofline(Strict):
    """Inputs of the memory-bandwidth floor for one decode step at batch 1."""

    bytes_per_decode_step: int = Field(gt=0)
    bytes_breakdown: dict[str, int] = Field(default_factory=dict)
    bandwidth_gb_s: Optional[float] = Field(None, gt=0, description="measured device-to-device copy, read+write")
    bandwidth_method: Optional[str] = None

    @property
    def floor_ms(self) -> Optional[float]:
        return self.bytes_per_decode_step / (self.bandwidth_gb_s * 1e9) * 1e3 if self.bandwidth_gb_s else None


class BenchSamples(Strict):
    """Raw per-iteration samples, client clock, milliseconds; docs/results-format.md says what each list holds
    (itl_ms: one gap per streamed output after the first, ITL statistics are computed over these gaps)."""

    ttft_ms: list[float] = Field(min_length=1)  # a bench result needs at least one measured iteration
    tpot_ms: list[float] = Field(min_length=1)
    e2e_ms: list[float]
    itl_ms: list[list[float]]
    tokens_per_output: Optional[list[list[int]]] = None  # None: one token per output (transformers)
    engine: Optional[EngineSamples] = None  # vLLM only
    instrumented_generate_ms: Optional[list[float]] = None
    bare_generate_ms: Optional[list[float]] = None


class BenchSummary(Strict):
    ttft_ms: Stats
    tpot_ms: Stats
    itl_ms: Stats
    e2e_ms: Stats


class ProfileRow(Strict):
    """One row of torch.profiler's key_averages(); times in microseconds, memory in bytes."""

    name: str
    calls: int
    self_cpu_us: float
    cpu_total_us: float
    self_device_us: Optional[float] = None
    device_total_us: Optional[float] = None
    cpu_mem_bytes: Optional[int] = None
    self_cpu_mem_bytes: Optional[int] = None
    device_mem_bytes: Optional[int] = None
    self_device_mem_bytes: Optional[int] = None


class ProfilePhase(Strict):
    label: Literal["cold", "warm", "decode"]
    description: str
    table: str = Field(description="key_averages().table(...) text, verbatim")
    totals: list[str] = Field(description="the 'Self CPU time total' / 'Self CUDA time total' lines")
    rows: list[ProfileRow]
    wall_ms: Optional[float] = None
    trace_file: Optional[str] = None
    diagnosis: Optional[str] = None
    awq_kernel_path: Optional[str] = None


class _ResultHead(Strict):
    """The fields every result starts with, in this order (a subclass narrows `kind`)."""
    format: Literal["awq-kit-result"] = FORMAT_NAME
    schema_version: Literal[2] = SCHEMA_VERSION
    kind: str
    run_id: str
    created_utc: str
    workload: Workload
    backend: Backend


class BenchResult(_ResultHead):
    kind: Literal["bench"] = "bench"
    samples: BenchSamples
    summary: BenchSummary
    provenance: Provenance
    roofline: Optional[Roofline] = None
    conditions: Optional[RunConditions] = Field(None, description="GPU runs; None in older results")
    notes: list[str] = Field(default_factory=list)


class ProfileResult(_ResultHead):
    kind: Literal["profile"] = "profile"
    phases: list[ProfilePhase]
    provenance: Provenance
    notes: list[str] = Field(default_factory=list)


Result = BenchResult | ProfileResult
_BY_KIND: dict[str, type[BaseModel]] = {"bench": BenchResult, "profile": ProfileResult}


def summarize(samples: list[float]) -> Stats:
    xs = sorted(float(x) for x in samples)
    # "inclusive": linear interpolation between closest ranks, numpy's default percentile
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else xs * 99
    return Stats(n=len(xs), median=statistics.median(xs), mean=statistics.fmean(xs), p90=q[89], p99=q[98],
                 std=statistics.pstdev(xs), min=xs[0], max=xs[-1])


def harness_overhead_text(instrumented_ms: Optional[list[float]], bare_ms: Optional[list[float]]) -> Optional[str]:
    """Instrumented generate() - the bare one run right after it, per iteration in ms and % of bare, in one line
    (the run's log and the week-1 details both print it); None: the run measured no baseline."""
    if not instrumented_ms or not bare_ms:
        return None
    pairs = [(a - b, 100.0 * (a - b) / b if b > 0 else math.nan) for a, b in zip(instrumented_ms, bare_ms)]
    diffs, pcts = sorted(d for d, _ in pairs), sorted(p for _, p in pairs)
    return (f"instrumented generate() − a bare generate() run right after it (same inputs and generation config, "
            f"no streamer or logits processor; each timed from one sync before to one sync after): median "
            f"{statistics.median(diffs):+.3f} ms ({statistics.median(pcts):+.3f}%), per iteration "
            f"{diffs[0]:+.3f} to {diffs[-1]:+.3f} ms ({pcts[0]:+.3f}% to {pcts[-1]:+.3f}%), n={len(pairs)}")


def _close(a: float, b: float) -> bool:
    # JSON keeps floats exactly; the tolerance (ms) only absorbs adding the same numbers in another order.
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def bench_inconsistencies(r: BenchResult) -> list[str]:
    """Where a bench result contradicts itself: one phrase per problem, naming the field and what was expected.
    The counts are checked first: the per-iteration checks pair lists by index."""
    s, n, iterations = r.samples, r.workload.output_len, r.workload.iterations
    out = [f"field 'samples.{name}' has {len(v)} entries, but workload.iterations is {iterations} (one per measured "
           "iteration)" for name in BenchSamples.model_fields  # every list but engine has one entry per iteration
           if name != "engine" and (v := getattr(s, name)) is not None and len(v) != iterations]
    if (s.bare_generate_ms is None) != (s.instrumented_generate_ms is None):
        out.append("fields 'samples.bare_generate_ms' and 'samples.instrumented_generate_ms' come as a pair, but "
                   "only one of them is present")
    if out:
        return out
    # itl_ms[i]: one gap per streamed output after the first, the outputs carrying output_len tokens in all;
    # e2e = TTFT + the sum of the gaps; TPOT = (e2e - TTFT) / (N - 1); generate() returns after its last token.
    for i, (ttft, tpot, e2e, gaps, outputs, wall) in enumerate(zip(
            s.ttft_ms, s.tpot_ms, s.e2e_ms, s.itl_ms, s.tokens_per_output or repeat(None),
            s.instrumented_generate_ms or repeat(None))):
        if outputs is None and len(gaps) != n - 1:
            out.append(f"field 'samples.itl_ms[{i}]' has {len(gaps)} gaps, but output_len {n} tokens, one per "
                       f"output (samples.tokens_per_output is null), give {n - 1}")
        elif outputs is not None and (sum(outputs) != n or any(k < 1 for k in outputs)):
            out.append(f"field 'samples.tokens_per_output[{i}]' is {outputs[:8]}{'...' if len(outputs) > 8 else ''}, "
                       f"but the outputs of an iteration carry at least one token each and output_len {n} in all")
        elif outputs is not None and len(gaps) != len(outputs) - 1:
            out.append(f"field 'samples.itl_ms[{i}]' has {len(gaps)} gaps, but samples.tokens_per_output[{i}] lists "
                       f"{len(outputs)} outputs, which give {len(outputs) - 1}")
        if not _close(e2e, ttft + math.fsum(gaps)):
            out.append(f"field 'samples.e2e_ms[{i}]' is {e2e!r}, but ttft_ms[{i}] + the sum of itl_ms[{i}] is "
                       f"{ttft + math.fsum(gaps)!r}")
        if not _close(tpot, want := (e2e - ttft) / (n - 1) if n > 1 else 0.0):
            out.append(f"field 'samples.tpot_ms[{i}]' is {tpot!r}, but (e2e_ms[{i}] - ttft_ms[{i}]) / (output_len - 1) "
                       f"is {want!r}")
        if wall is not None and wall < e2e and not _close(wall, e2e):
            out.append(f"field 'samples.instrumented_generate_ms[{i}]' is {wall!r}, shorter than e2e_ms[{i}] {e2e!r}, "
                       "but generate() returns after its last token")
    # summary = summarize(samples), field by field; ITL over all gaps of all iterations
    for name in BenchSummary.model_fields:
        values = ([g for gaps in s.itl_ms for g in gaps] or [0.0]) if name == "itl_ms" else getattr(s, name)
        want, have = summarize(values), getattr(r.summary, name)
        for stat in Stats.model_fields:
            a, b = getattr(have, stat), getattr(want, stat)
            if not (a == b if stat == "n" else _close(a, b)):
                out.append(f"field 'summary.{name}.{stat}' is {a!r}, but the {stat} of samples.{name} is {b!r}")
    return out + engine_problems(s.engine, iterations, s.ttft_ms, s.tpot_ms)


class ResultFileError(Exception):
    """A results file that is unreadable, malformed or of the wrong version; str() is one paragraph: the file, the
    field, what was expected."""


class NotAResultFile(Exception):
    """A file in results/ that is not a kit result at all (skipped with a note)."""


def dump_result(result: Result) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def _paragraph(path: Path, what: str, problems: list[str], advice: str) -> str:
    """One paragraph naming the first five problems."""
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"{path}: {what}: " + "; ".join(problems[:5]) + more + ". " + advice


def _refuse_inconsistent(result: Result, path: Path, advice: str) -> None:
    if isinstance(result, BenchResult) and (problems := bench_inconsistencies(result)):
        raise ResultFileError(_paragraph(path, "the result contradicts itself", problems, advice))


def write_result(result: Result, path: Path) -> Path:
    """Validate (again), check that a bench result agrees with itself, and write atomically. Returns the path."""
    path = Path(path)
    type(result).model_validate(result.model_dump(mode="json"))
    _refuse_inconsistent(result, path, "Nothing was written: this is a bug in the code that built the result, "
                                       "please report it with this message.")
    atomic_write_text(path, dump_result(result))
    return path


def read_result_data(path: Path) -> dict[str, Any]:
    """The JSON object of a results file whose "format" is ours (NotAResultFile otherwise), nothing else checked."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ResultFileError(f"{path}: is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); it may be "
                              "truncated. Re-run the session that produced it or remove the file.") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ResultFileError(f"{path}: cannot be read ({e}). Check its permissions or remove it.") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise NotAResultFile(f"{path}: JSON without \"format\": \"{FORMAT_NAME}\"")
    return data


def validate_result(path: Path, data: dict[str, Any]) -> Result:
    """`data` as the model of its kind; ResultFileError names the fields that do not fit."""
    if (model := _BY_KIND.get(data.get("kind"))) is None:
        raise ResultFileError(f"{path}: field 'kind' is {data.get('kind')!r}; expected one of {sorted(_BY_KIND)}.")
    try:
        return model.model_validate(data)  # type: ignore[return-value]
    except ValidationError as err:
        problems = [f"field '{'.'.join(str(x) for x in e['loc']) or '(top level)'}': {e['msg']} "
                    f"(got {e.get('input')!r:.80})" for e in err.errors()]
        raise ResultFileError(_paragraph(path, "not a valid kit result", problems, "Fix or remove the file (re-run "
                                         "the session that produced it) and try again.")) from err


def load_result(path: Path) -> Result:
    """Load and validate one results file; a bench result must also agree with itself (bench_inconsistencies).

    Raises NotAResultFile for JSON that is not ours (or not JSON-named), ResultFileError for our files that are broken.
    """
    path = Path(path)
    if path.suffix != ".json":
        raise NotAResultFile(f"{path}: not a .json file")
    data = read_result_data(path)
    version = data.get("schema_version")
    if version == 1:
        raise ResultFileError(
            f"{path}: field 'schema_version' is 1, but this kit reads version {SCHEMA_VERSION} (version 1 stored "
            "intervals derived from the vLLM engine timestamps beside them; version 2 stores the timestamps only). "
            f"Convert it with `python tools/migrate_results.py {path}`, which recomputes those intervals, checks "
            "them against the stored ones and rewrites the file.")
    if version != SCHEMA_VERSION:
        raise ResultFileError(
            f"{path}: field 'schema_version' is {version!r}, but this kit reads version {SCHEMA_VERSION}. "
            "Re-run the session with this kit, or render it with the kit version that wrote it.")
    result = validate_result(path, data)
    _refuse_inconsistent(result, path, "A report would show numbers its own samples do not support. Re-run the "
                                       "session that produced the file, or remove it.")
    return result


def result_filename(result: Result) -> str:
    """<kind>-<backend label slug>-<device slug>-<run_id>.json: sortable, unique per run."""

    def slug(s: str) -> str:
        return "".join(c if c.isalnum() else "-" for c in s.lower()).strip("-").replace("--", "-")

    gpu = result.provenance.gpu
    device = slug(gpu.name) if gpu else "cpu"
    return f"{result.kind}-{slug(result.backend.label)}-{device}-{result.run_id}.json"
