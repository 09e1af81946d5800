"""vLLM backend of the shared benchmark (contract: bench/api.py): in-process V1 AsyncLLM, streamed DELTA outputs.

One engine per row, its arguments from bench/vllm_args.py; how the client and engine clocks are read and kept apart:
README, "Clocks". torch and vllm are imported inside functions, so this is tested without them (tests/host).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional

from bench.api import IterationProgress, Measurement, ResolvedModel, derive_token_timing, run_scenario
from core.errors import BenchError
from bench.provenance import installed_version
from bench.workload import require_gpu
from bench.vllm_args import (DTYPE, check_checkpoint, engine_kwargs, max_position_check,
                              quantization_of, sampling_kwargs, variant_of)
from core.engine_samples import (ENGINE_CLOCK_NOTE, EngineSamples, EngineTimestamps, engine_tpot_ms,
                                 queued_to_first_token_ms)
from core.results import Backend, Workload
from core.rules import check_capability, read_config, refuse_cpu_for_vllm, vllm_series

# RequestStateStats fields copied per measured iteration (vLLM 0.12.0, vllm/v1/metrics/stats.py): raw only.
ENGINE_FIELDS = tuple(EngineTimestamps.model_fields)


@dataclass
class StreamRecord:
    """What the client saw of one request: client clock readings, token counts, the last metrics."""

    request_id: str
    t_submit: float
    output_times: list[float] = field(default_factory=list)  # one reading per streamed output
    tokens_per_yield: list[int] = field(default_factory=list)  # tokens each of those outputs carried
    finished: bool = False
    finish_reason: Optional[str] = None
    metrics: Any = None  # RequestOutput.metrics of the last output (engine clock)

    @property
    def n_tokens(self) -> int:
        return sum(self.tokens_per_yield)

    @property
    def merged_yields(self) -> int:
        """Outputs that carried more than one token (DELTA outputs merged behind a slow consumer)."""
        return sum(1 for k in self.tokens_per_yield if k > 1)


async def consume_stream(start: Callable[[], AsyncIterator[Any]], request_id: str,
                         clock: Callable[[], float] = time.perf_counter) -> StreamRecord:
    """Submit one request (start() returns AsyncLLM.generate's stream, which submits on first iteration) and
    read the client clock on every output that carries tokens. Leaving early closes the stream: vLLM aborts it."""
    stream = start()
    record = StreamRecord(request_id=request_id, t_submit=clock())
    try:
        async for out in stream:
            t = clock()
            completion = out.outputs[0]
            k = len(completion.token_ids)
            if k:  # a final output may carry no new token; it is not a token arrival
                record.tokens_per_yield.append(k)
                record.output_times.append(t)
            record.metrics = getattr(out, "metrics", None)
            if out.finished:
                record.finished = True
                record.finish_reason = completion.finish_reason
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None and not record.finished:
            await aclose()
    return record


def check_record(record: StreamRecord, expected_tokens: int) -> None:
    """Exactly N tokens and a finished request, or a BenchError that says what came back."""
    if record.finished and record.n_tokens == expected_tokens:
        return
    state = f"finished with finish_reason={record.finish_reason!r}" if record.finished else "ended before finishing"
    raise BenchError(
        f"vLLM request {record.request_id} {state} after {record.n_tokens} generated tokens, but the workload asks "
        f"for exactly {expected_tokens} (max_tokens = min_tokens = {expected_tokens}, ignore_eos=True). TPOT over a "
        "different number of tokens would not be comparable, so the run stops. Check that --max-model-len is at "
        "least input + output length and that nothing else aborted the request (see vLLM's log above)."
    )


def iteration_timing(record: StreamRecord) -> tuple[float, list[float], float, float]:
    return derive_token_timing(record.t_submit, record.output_times, record.tokens_per_yield)


def engine_snapshot(metrics: Any) -> Optional[EngineTimestamps]:
    """Copy a RequestStateStats as read: raw timestamps and counts (core/engine_samples.py derives intervals)."""
    if metrics is None:
        return None
    raw = {name: getattr(metrics, name, None) for name in ENGINE_FIELDS}
    missing = [name for name in ENGINE_FIELDS if EngineTimestamps.model_fields[name].is_required()
               and not isinstance(raw[name], (int, float))]
    if missing:
        raise BenchError(
            f"vLLM's RequestOutput.metrics ({type(metrics).__name__}) has no numeric {', '.join(missing)}; this "
            "backend reads vLLM 0.12/0.20's RequestStateStats, so the engine-side timestamps cannot be recorded. "
            "Check the installed vLLM version against the image's lock."
        )
    return EngineTimestamps(**{k: v for k, v in raw.items() if isinstance(v, (bool, int, float))})


def engine_log_line(engine: EngineSamples, client_tpot_ms: list[float]) -> str:
    """Medians of the engine's TPOT and queued -> first token beside the client's TPOT (derived on read)."""
    stamps = [e for e in engine.iterations if e is not None]
    engine_tpot = [t for e in stamps if (t := engine_tpot_ms(e)) is not None]
    q2f = [queued_to_first_token_ms(e) for e in stamps]
    text = f"engine clock: {len(stamps)} of {len(engine.iterations)} requests with timestamps"
    if engine_tpot:
        text += (f"; TPOT median {statistics.median(engine_tpot):.3f} ms (client "
                 f"{statistics.median(client_tpot_ms):.3f} ms)")
    if q2f:
        text += f"; queued -> first token median {statistics.median(q2f):.3f} ms"
    return text


def merge_counts(records: list[StreamRecord]) -> dict[str, int]:
    """How often vLLM merged tokens into one streamed output, over the measured requests."""
    return {
        "requests": len(records),
        "requests_with_merges": sum(1 for r in records if r.merged_yields),
        "merged_outputs": sum(r.merged_yields for r in records),
        "outputs": sum(len(r.tokens_per_yield) for r in records),
        "tokens": sum(r.n_tokens for r in records),
        "max_tokens_in_one_output": max((max(r.tokens_per_yield, default=0) for r in records), default=0),
    }


def stream_notes(records: list[StreamRecord]) -> list[str]:
    c = merge_counts(records)
    if not c["merged_outputs"]:
        return [f"Every one of the {c['tokens']} measured tokens arrived in its own streamed output: no merges, so "
                "the ITL gaps are per token."]
    return [
        f"{c['requests_with_merges']} of {c['requests']} measured requests received tokens merged into one streamed "
        f"output ({c['merged_outputs']} of {c['outputs']} outputs; at most {c['max_tokens_in_one_output']} tokens in "
        "one; RequestOutputKind.DELTA behind the consumer). ITL samples are the gaps between outputs (one per output "
        "after the first, as vLLM's serving benchmark counts them), so merges invent no 0 ms gaps; TPOT = "
        "(e2e - TTFT) / (N - 1) counts every token."
    ]


def make_engine_args(kwargs: dict[str, Any]):
    from vllm.engine.arg_utils import AsyncEngineArgs

    return AsyncEngineArgs(**kwargs)


def make_sampling_params(kwargs: dict[str, Any]):
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(**{**kwargs, "output_kind": RequestOutputKind[kwargs["output_kind"]]})


def make_prompt(prompt_ids: list[int]):
    """The prompt as token ids, in the form this vLLM takes without re-processing or a tokenizer: 0.20 wants a
    rendered TokensInput (it deprecates raw prompts), 0.12 has no tokens_input and takes a TokensPrompt."""
    import vllm.inputs

    ids = [int(t) for t in prompt_ids]
    if hasattr(vllm.inputs, "tokens_input"):
        return vllm.inputs.tokens_input(ids)
    return vllm.inputs.TokensPrompt(prompt_token_ids=ids)


def _name(value: Any) -> Any:
    """Enum members as their names; everything else JSON-able as is, else str() (a torch dtype without "torch.")."""
    if isinstance(value, enum.Enum):  # before int: CompilationMode is an IntEnum
        return value.name
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_name(v) for v in value]
    return str(value).removeprefix("torch.")


# What the report records of the frontend's VllmConfig: (section, where in settings.resolved, its fields). A
# field is read only where this vLLM's config dataclass declares it (tests/vllm checks that both pinned versions
# declare every one); sections other than compilation put their fields at the top level.
RESOLVED_FIELDS: tuple[tuple[str, Optional[str], tuple[str, ...]], ...] = (
    ("model_config", None, ("quantization", "dtype", "max_model_len", "enforce_eager", "skip_tokenizer_init")),
    ("cache_config", None, ("enable_prefix_caching", "gpu_memory_utilization", "block_size")),
    ("scheduler_config", None, ("max_num_seqs", "max_num_batched_tokens", "async_scheduling", "stream_interval",
                                "enable_chunked_prefill")),
    ("compilation_config", "compilation", ("mode", "cudagraph_mode", "cudagraph_capture_sizes",
                                           "max_cudagraph_capture_size", "backend")),
)


def config_fields(config: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of one vLLM config dataclass, as plain data, in the order named."""
    declared = {f.name for f in dataclasses.fields(config)}
    return {name: _name(getattr(config, name)) for name in names if name in declared}


def resolved_settings(vllm_config: Any) -> dict[str, Any]:
    """What vLLM resolved (the frontend's VllmConfig) for the settings the report records."""
    out: dict[str, Any] = {}
    for section, key, names in RESOLVED_FIELDS:
        config = getattr(vllm_config, section, None)
        if config is not None:
            fields = config_fields(config, names)
            out.update({key: fields} if key else fields)
    return out


# Asked in the engine arguments and resolved by vLLM: the resolved value, else (not readable) the asked one.
RESOLVED_OR_ASKED = ("quantization", "enforce_eager", "max_model_len", "enable_prefix_caching", "async_scheduling",
                     "gpu_memory_utilization")


def build_settings(ekw: dict[str, Any], skw: dict[str, Any], resolved: dict[str, Any], version: str) -> dict[str, Any]:
    """Backend.settings: what was asked, what vLLM resolved, how the clocks were read."""
    comp = resolved.get("compilation") or {}
    value = {key: resolved.get(key, ekw[key]) for key in RESOLVED_OR_ASKED}
    return {
        "vllm_version": version,
        "engine": "vllm.v1.engine.async_llm.AsyncLLM (in-process frontend, engine core in a child process)",
        **value,
        "quantization_asked": ekw["quantization"],
        "async_scheduling_asked": ekw["async_scheduling"],
        "compilation_mode": comp.get("mode", "NONE" if value["enforce_eager"] else "vLLM default (not readable)"),
        **{name: comp.get(name) for name in ("cudagraph_mode", "cudagraph_capture_sizes")},
        # Empty: the study's configuration (CUDA graphs, async scheduling off); else how this run differs.
        "variant": variant_of({**ekw, "enforce_eager": value["enforce_eager"],
                               "async_scheduling": value["async_scheduling"]}),
        "prompt": "TokensPrompt (token ids)" + (", no tokenizer loaded" if ekw["skip_tokenizer_init"] else ""),
        "client_clock": "time.perf_counter, read on each streamed RequestOutput (DELTA), with its token count",
        "stats": "on (disable_log_stats=False) for RequestOutput.metrics, as in `vllm serve`: the frontend records "
                 "its stat loggers after each engine step, before the client reads the step's token; the engine-"
                 "side TPOT (first to last token, engine clock) excludes that frontend time",
        "engine_args": dict(ekw),
        "sampling_params": dict(skw),
        "resolved": resolved,
        "resolved_source": "the frontend's VllmConfig after AsyncEngineArgs.create_engine_config; the engine core "
                           "may still narrow cudagraph_mode to what the attention backend supports",
    }


def gpu_capability() -> tuple[Optional[tuple[int, int]], str]:
    import torch

    require_gpu("The vLLM backend needs an NVIDIA GPU")
    cap = torch.cuda.get_device_capability(0)
    return (int(cap[0]), int(cap[1])), torch.cuda.get_device_name(0)


def _log(msg: str) -> None:
    print(f"[vllm backend] {msg}", file=sys.stderr, flush=True)


def _engine_start_error(e: Exception, ekw: dict[str, Any], model: ResolvedModel) -> BenchError:
    first = (str(e).strip().splitlines() or [""])[0][:500]
    return BenchError(
        f"vLLM {ekw.get('quantization')} could not start an engine for {model.model_id} ({type(e).__name__}: {first}). "
        f"It was asked for quantization={ekw['quantization']}, dtype={ekw['dtype']}, max_model_len="
        f"{ekw['max_model_len']}, gpu_memory_utilization={ekw['gpu_memory_utilization']}, enforce_eager="
        f"{ekw['enforce_eager']}. If the GPU ran out of memory, lower --gpu-memory-utilization or free the GPU; if "
        "vLLM rejected the quantization for this checkpoint, the checkpoint's quantization_config does not suit that "
        "kernel (awq_marlin needs 4-bit, group size 128 or similar, and layer sizes divisible by 128). vLLM's own "
        "log above has the details."
    )


async def run_session(make_engine: Callable[[], Any], describe: Callable[[Any], dict[str, Any]], prompt: Any,
                      sampling: Any, workload: Workload, progress: IterationProgress,
                      on_start_error: Callable[[Exception], BaseException],
                      ) -> tuple[list[StreamRecord], dict[str, Any]]:
    """Start the engine (make_engine: the real AsyncLLM or a test double), describe what it resolved, run the
    scenario, always shut the engine down. vLLM's errors from a Ctrl-C that also reached its engine-core process
    are turned back into the cancellation they stand for."""
    engine = None
    try:
        engine = make_engine()
        resolved = describe(engine)
        _log(f"engine ready; {workload.warmup} warm-up and {workload.iterations} measured requests of "
             f"{workload.input_len} + {workload.output_len} tokens")
        tag, n = uuid.uuid4().hex[:8], workload.output_len

        async def timed_request(warmup: bool, i: int) -> StreamRecord:
            rid = f"kit-{tag}-{'warmup' if warmup else 'iter'}-{i}"
            rec = await consume_stream(lambda: engine.generate(prompt, sampling, rid), rid)
            check_record(rec, n)
            return rec

        return await run_scenario(timed_request, workload.warmup, workload.iterations, progress), resolved
    except BenchError:
        raise
    except Exception as e:
        # Ctrl-C reaches vLLM's engine-core process too, which may die before our task sees the
        # cancellation: report an interrupt, not an engine failure.
        cancelling = getattr(asyncio.current_task(), "cancelling", None)  # Task.cancelling: Python >= 3.11
        if cancelling and cancelling():
            raise asyncio.CancelledError() from e
        if engine is None:
            raise on_start_error(e) from e
        raise
    finally:
        if engine is not None:
            engine.shutdown()


def start_engine(engine_args: Any) -> Any:
    """The real engine: V1 AsyncLLM, in-process frontend (tests/host puts their FakeAsyncLLM here; no GPU there)."""
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_engine_args(engine_args)


def assemble_measurement(records: list[StreamRecord], workload: Workload, ekw: dict[str, Any],
                         skw: dict[str, Any], resolved: dict[str, Any], version: str,
                         capability: tuple[int, int]) -> Measurement:
    """Client samples from the client clock; engine timestamps kept apart in Measurement.engine."""
    ttft, itl, e2e, tpot = (list(column) for column in zip(*map(iteration_timing, records)))
    per_output = [list(rec.tokens_per_yield) for rec in records]
    snaps = [engine_snapshot(r.metrics) for r in records]
    notes = stream_notes(records)
    engine: Optional[EngineSamples]
    if all(s is None for s in snaps):
        engine = None
        notes.append("vLLM returned no RequestOutput.metrics (stats disabled?), so no engine-side timestamps.")
    else:
        engine = EngineSamples(clock=ENGINE_CLOCK_NOTE, iterations=snaps)
        _log(engine_log_line(engine, tpot))
        mismatched = [i for i, s in enumerate(snaps) if s and s.num_generation_tokens != workload.output_len]
        if mismatched:
            notes.append(f"engine num_generation_tokens differs from output_len in iterations {mismatched}.")
    if resolved.get("async_scheduling") not in (None, ekw["async_scheduling"]):
        notes.append(f"async_scheduling was asked {ekw['async_scheduling']} but vLLM resolved "
                     f"{resolved['async_scheduling']}; the row is labelled with what vLLM resolved.")
    q = ekw["quantization"]
    settings = build_settings(ekw, skw, resolved, version)
    settings["gpu_capability"] = f"{capability[0]}.{capability[1]}"
    settings["stream_merges"] = merge_counts(records)
    backend = Backend(name="vllm", label=f"vLLM ({q})", quantization=q, dtype=DTYPE, device="cuda",
                      settings=settings)
    return Measurement(ttft_ms=ttft, tpot_ms=tpot, e2e_ms=e2e, itl_ms=itl, tokens_per_output=per_output,
                       backend=backend, engine=engine, notes=notes)


def preflight(args: argparse.Namespace) -> tuple[tuple[int, int], str]:
    """((major, minor), GPU name) once the checks that need no model pass: quantization named, a GPU that can run
    the kernel. Cheap (no vllm import): the driver runs it before downloading, so a T4 refuses awq_marlin at once."""
    q = quantization_of(args)
    refuse_cpu_for_vllm(getattr(args, "device", None))
    capability, gpu_name = gpu_capability()
    # the version from the package metadata, without importing vllm: preflight stays cheap
    check_capability(q, capability, gpu_name, vllm_series(installed_version("vllm")))
    return capability, gpu_name


def measure(workload: Workload, model: ResolvedModel, prompt_ids: list[int], args: argparse.Namespace,
            progress: IterationProgress) -> Measurement:
    """The bench/api.py contract for the vLLM rows. Raises BenchError; KeyboardInterrupt propagates."""
    capability, _gpu_name = preflight(args)
    config = model.config or read_config(model.path, model.model_id)
    check_checkpoint(config, model.model_id)
    ekw = engine_kwargs(model.path, workload, args)
    max_position_check(config, ekw["max_model_len"], model.model_id)
    skw = sampling_kwargs(workload, args)
    if len(prompt_ids) != workload.input_len:
        raise BenchError(f"internal: {len(prompt_ids)} prompt token ids for input_len {workload.input_len}.")

    engine_args, sampling, prompt = make_engine_args(ekw), make_sampling_params(skw), make_prompt(prompt_ids)

    def describe(engine: Any) -> dict[str, Any]:
        resolved = resolved_settings(engine.vllm_config)
        if resolved.get("quantization") not in (None, ekw["quantization"]):
            raise BenchError(
                f"vLLM was asked for quantization={ekw['quantization']} but resolved {resolved['quantization']}; "
                "the row would not measure the kernel it names, so it stops here."
            )
        return resolved

    _log(f"starting AsyncLLM for {model.model_id} (quantization={ekw['quantization']}, "
         f"enforce_eager={ekw['enforce_eager']}, async_scheduling={ekw['async_scheduling']}, "
         f"max_model_len={ekw['max_model_len']})")
    # asyncio.run: on Ctrl-C the main task is cancelled (the finally blocks abort the in-flight
    # request and shut the engine down) and KeyboardInterrupt is raised from here.
    records, resolved = asyncio.run(run_session(lambda: start_engine(engine_args), describe, prompt, sampling,
                                                workload, progress, lambda e: _engine_start_error(e, ekw, model)))
    return assemble_measurement(records, workload, ekw, skw, resolved, installed_version("vllm"), capability)
