"""vLLM's own timestamps of each measured request, stored raw (a stored derived value could disagree with them): the
intervals derived from them, and `engine_problems`, where they contradict themselves or the client samples."""
from __future__ import annotations

from typing import Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

# What the stored fields are (vLLM 0.12 / 0.20, vllm/v1/metrics/stats.py RequestStateStats). Written by the backend.
ENGINE_CLOCK_NOTE = (
    "vLLM RequestOutput.metrics (RequestStateStats) of each measured request. queued_ts, scheduled_ts, "
    "first_token_ts and last_token_ts are time.monotonic() seconds read in the engine-core process; "
    "arrival_time is time.time() in the frontend process and first_token_latency a frontend wall-clock "
    "interval in seconds. Intervals are computed on read, within one clock only. None of "
    "these are comparable with the client-side samples (time.perf_counter in the benchmark process)."
)

# Bounds of the checks against the client samples; docs/results-format.md, "Engine timestamps", says why these.
# Client and engine TPOT time the same decode steps: committed H200 results agree within 0.12%, while runs, kernels
# and scheduler modes differ by 3-40%. The span slack keeps a short honest run (a few tokens) from being refused.
ENGINE_TPOT_TOLERANCE_PCT = 2.0
ENGINE_DECODE_SPAN_SLACK_MS = 5.0
# An interval read inside another cannot be longer than it (engine queued -> first token within first_token_latency
# within client TTFT); 1 ms only absorbs a wall-clock adjustment.
ENGINE_NESTED_SLACK_MS = 1.0


class Strict(BaseModel):
    """Unknown keys are an error: a typo in a writer must not silently drop data, nor a derived value creep back in.
    The base of every stored model; `class M(Strict, frozen=True)` for an immutable one (the published data)."""

    model_config = ConfigDict(extra="forbid")


class EngineTimestamps(Strict):
    """One measured request's RequestStateStats, as read: raw timestamps and counts, nothing derived."""

    arrival_time: Optional[float] = Field(None, description="time.time() seconds in the frontend process")
    queued_ts: float = Field(description="time.monotonic() seconds, engine core")
    scheduled_ts: float = Field(description="time.monotonic() seconds, engine core")
    first_token_ts: float = Field(description="time.monotonic() seconds, engine core")
    last_token_ts: float = Field(description="time.monotonic() seconds, engine core")
    first_token_latency: float = Field(description="seconds, the frontend's wall clock: arrival to first token")
    num_generation_tokens: int = Field(description="tokens the engine generated for the request")
    is_corrupted: Optional[bool] = None


class EngineSamples(Strict):
    """vLLM only: the engine's own timestamps per measured iteration (None: vLLM returned no metrics for it)."""

    clock: str = Field(description="what the fields are and which clock read each (ENGINE_CLOCK_NOTE)")
    iterations: list[Optional[EngineTimestamps]]


def _interval_ms(start: str, end: str) -> Callable[[EngineTimestamps], float]:
    """end - start of one request, two engine-core timestamps, in milliseconds."""
    return lambda e: (getattr(e, end) - getattr(e, start)) * 1e3


queued_to_scheduled_ms = _interval_ms("queued_ts", "scheduled_ts")
scheduled_to_first_token_ms = _interval_ms("scheduled_ts", "first_token_ts")
queued_to_first_token_ms = _interval_ms("queued_ts", "first_token_ts")
first_to_last_token_ms = _interval_ms("first_token_ts", "last_token_ts")


def engine_tpot_ms(e: EngineTimestamps) -> Optional[float]:
    """(last_token_ts - first_token_ts) / (N - 1), N the engine's own token count; None for a single token."""
    n = e.num_generation_tokens
    return first_to_last_token_ms(e) / (n - 1) if n > 1 else None


def frontend_ms(e: EngineTimestamps) -> float:
    """first_token_latency - queued -> first token: arrival -> queued plus first token -> frontend (IPC, output
    processing). A difference of two intervals on two clocks, never of two timestamps."""
    return e.first_token_latency * 1e3 - queued_to_first_token_ms(e)


def client_side_ms(client_ttft_ms: float, e: EngineTimestamps) -> float:
    """Client TTFT - first_token_latency: submission -> arrival plus frontend -> client (stream delivery)."""
    return client_ttft_ms - e.first_token_latency * 1e3


def tpot_gap_pct(client_tpot_ms: float, e: EngineTimestamps) -> Optional[float]:
    """How much longer the client's TPOT is than the engine core's, in % of the engine's."""
    engine = engine_tpot_ms(e)
    return 100.0 * (client_tpot_ms - engine) / engine if engine else None


def _field(i: int, name: str = "") -> str:
    return f"field 'samples.engine.iterations[{i}]{'.' + name if name else ''}'"


def _order_problems(i: int, e: EngineTimestamps) -> list[str]:
    where = _field(i)
    stamps = {k: getattr(e, k) for k in ("queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts")}
    out = []
    if not all(v > 0 for v in stamps.values()):  # 0.0 is RequestStateStats' "never set"
        out.append(f"{where} has {stamps}, but a finished request has every timestamp set (> 0)")
    elif not e.queued_ts <= e.scheduled_ts <= e.first_token_ts <= e.last_token_ts:
        out.append(f"{where} has {stamps}, but the engine queues, schedules, then emits the first and the last token "
                   "(queued_ts <= scheduled_ts <= first_token_ts <= last_token_ts)")
    if not e.first_token_latency > 0:
        out.append(f"{_field(i, 'first_token_latency')} is {e.first_token_latency!r}, but it is a positive interval")
    if e.num_generation_tokens < 1:
        out.append(f"{_field(i, 'num_generation_tokens')} is {e.num_generation_tokens!r}, but a request that streamed "
                   "tokens generated at least one")
    return out


def _client_problems(i: int, e: EngineTimestamps, client_ttft_ms: float, client_tpot_ms: float) -> list[str]:
    out, engine_tpot, latency, n = [], engine_tpot_ms(e), e.first_token_latency * 1e3, e.num_generation_tokens
    # Client and engine TPOT may differ by the tolerance in %, or by the span slack spread over the decode steps.
    if engine_tpot is not None and abs(client_tpot_ms - engine_tpot) > max(
            engine_tpot * ENGINE_TPOT_TOLERANCE_PCT / 100.0, ENGINE_DECODE_SPAN_SLACK_MS / (n - 1)):
        out.append(f"{_field(i)} gives an engine TPOT of {engine_tpot:.4f} ms ((last_token_ts - first_token_ts) / "
                   f"(num_generation_tokens - 1)), but samples.tpot_ms[{i}] is {client_tpot_ms:.4f} ms: the same "
                   f"decode steps agree within {ENGINE_TPOT_TOLERANCE_PCT:g}% (or {ENGINE_DECODE_SPAN_SLACK_MS:g} ms "
                   "over the decode span)")
    if latency > client_ttft_ms + ENGINE_NESTED_SLACK_MS:
        out.append(f"{_field(i, 'first_token_latency')} is {latency:.4f} ms, longer than "
                   f"samples.ttft_ms[{i}] {client_ttft_ms:.4f} ms by more than {ENGINE_NESTED_SLACK_MS:g} ms, but the "
                   "client submits before the frontend sees the request and reads the first token after it")
    if queued_to_first_token_ms(e) > latency + ENGINE_NESTED_SLACK_MS:
        out.append(f"{_field(i)} gives queued -> first token {queued_to_first_token_ms(e):.4f} ms, longer than its "
                   f"first_token_latency {latency:.4f} ms by more than {ENGINE_NESTED_SLACK_MS:g} "
                   "ms, but the engine core's interval lies inside the frontend's")
    return out


def engine_problems(engine: Optional[EngineSamples], iterations: int, client_ttft_ms: list[float],
                    client_tpot_ms: list[float]) -> list[str]:
    """Where engine timestamps contradict themselves or the client's samples: one phrase per problem."""
    if engine is None:
        return []
    if len(engine.iterations) != iterations:
        return [f"field 'samples.engine.iterations' has {len(engine.iterations)} entries, but workload.iterations is "
                f"{iterations} (one per measured iteration)"]
    out = []
    for i, (e, ttft, tpot) in enumerate(zip(engine.iterations, client_ttft_ms, client_tpot_ms)):
        if e is not None:
            out += _order_problems(i, e) or _client_problems(i, e, ttft, tpot)
    return out
