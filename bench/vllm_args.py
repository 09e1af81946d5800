"""What the vLLM backend asks vLLM for, as plain data: engine and sampling arguments, and the checks before them.

Importable without torch and vllm: tests/host checks the rules, tests/vllm hands the dictionaries to the real classes.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.errors import BenchError
from core.rules import QUANTIZATIONS, check_context, check_max_model_len, require_awq
from core.results import Workload

DTYPE = "float16"  # the awq kernel runs in fp16 only; both rows use it so the comparison is fair
# The study ran vLLM 0.12.0, whose SchedulerConfig.async_scheduling defaults to False; vLLM 0.20 turns it on
# when unset, which alone moves awq_marlin's TTFT by ~2x on an H200 (FIELD-NOTES). So it is always passed.
STUDY_ASYNC_SCHEDULING = "off"
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's own default
OUTPUT_KIND = "DELTA"  # vllm.sampling_params.RequestOutputKind member name

# Files whose presence means the checkpoint ships a tokenizer that vLLM can load.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _opt(args: argparse.Namespace, name: str, default: Any) -> Any:
    """args.<name>, or default when the driver did not set it (None counts as unset)."""
    value = getattr(args, name, None)
    return default if value is None else value


def quantization_of(args: argparse.Namespace) -> str:
    q = getattr(args, "quantization", None)
    if q not in QUANTIZATIONS:
        raise BenchError(
            f"The vLLM backend needs --quantization awq or awq_marlin (got {q!r}). It is passed to vLLM explicitly: "
            "left unset, vLLM 0.12 silently upgrades an AWQ checkpoint to awq_marlin, so an 'awq' row would "
            "measure the marlin kernel."
        )
    return q


check_checkpoint = require_awq  # the vLLM rows measure AWQ kernels


def has_tokenizer(model_dir: str | Path) -> bool:
    d = Path(model_dir)
    return any((d / name).is_file() for name in TOKENIZER_FILES)


def max_position_check(config: dict[str, Any], max_model_len: int, model: str) -> None:
    check_context(config, max_model_len, "max_model_len (input + output, or --max-model-len)", model)


def engine_kwargs(model_dir: str | Path, workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of vllm.engine.arg_utils.AsyncEngineArgs for one row. Plain data (JSON-able)."""
    return {
        "model": str(model_dir),
        # Without a tokenizer (synthetic checkpoints) the prompt is token ids and nothing is detokenized.
        "skip_tokenizer_init": not has_tokenizer(model_dir),
        # Explicit: unset, vLLM would turn an awq checkpoint into awq_marlin on an Ampere+ GPU.
        "quantization": quantization_of(args),
        "dtype": DTYPE,
        "seed": int(_opt(args, "seed", workload.seed)),
        "max_model_len": check_max_model_len(_opt(args, "max_model_len", None), workload.input_len,
                                             workload.output_len),
        "enforce_eager": bool(_opt(args, "enforce_eager", False)),
        # V1 turns prefix caching on by default: warm-ups re-send the same prompt, so the timed copy
        # would skip its prefill.
        "enable_prefix_caching": False,
        # Stats on, so that RequestOutput.metrics (engine-side timestamps) is populated.
        "disable_log_stats": False,
        "enable_log_requests": False,
        "gpu_memory_utilization": float(_opt(args, "gpu_memory_utilization", DEFAULT_GPU_MEMORY_UTILIZATION)),
        "tensor_parallel_size": 1,
        # Explicit, like the quantization: unset, vLLM 0.20 would schedule asynchronously and 0.12 would not.
        "async_scheduling": _opt(args, "async_scheduling", STUDY_ASYNC_SCHEDULING) == "on",
    }


def variant_of(engine_kw: dict[str, Any]) -> list[str]:
    """How a row's engine settings differ from the study's vLLM 0.12.0 defaults (torch.compile + CUDA graphs, async
    scheduling off); empty for the study's own. The report fills week-1 cells only with empty variants."""
    return [text for key, text in (("enforce_eager", "enforce_eager (no CUDA graphs, no torch.compile)"),
                                   ("async_scheduling", "async scheduling on")) if engine_kw.get(key)]


def sampling_kwargs(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of vllm.SamplingParams (output_kind by member name): exactly N tokens (max_tokens = min_tokens
    = N, ignore_eos), greedy (the seed changes nothing but is recorded), no detokenization."""
    n = workload.output_len
    return dict(n=1, temperature=0.0, max_tokens=n, min_tokens=n, ignore_eos=True,
                seed=int(_opt(args, "seed", workload.seed)), detokenize=False, output_kind=OUTPUT_KIND)
