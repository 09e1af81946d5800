"""What the vLLM backend asks vLLM 0.12.0 for, as plain data: engine and sampling arguments, checks.

Importable without torch and without vllm, so that every rule here is unit-tested on any
machine (tests/host/test_vllm_stream.py) and the exact dictionaries are handed to the real
vllm 0.12.0 classes wherever vllm imports (tests/vllm/). bench/vllm_backend.py turns them into
`AsyncEngineArgs(**engine_kwargs(...))` and `SamplingParams(**sampling_kwargs(...))`.

Options read from the driver's argparse.Namespace (all with defaults, see `_opt`):
    args.quantization            "awq" | "awq_marlin" (required: passed to vLLM explicitly)
    args.enforce_eager           bool, default False (vLLM's default: torch.compile + CUDA graphs)
    args.max_model_len           int | None, default input_len + output_len
    args.gpu_memory_utilization  float, default 0.9 (vLLM's default)
    args.seed                    int, default workload.seed (engine seed and per-request seed)
    args.async_scheduling        "on" | "off", default "off" (vLLM 0.12.0's default; 0.20 turns it on when unset)
    args.device                  "cuda" | "auto" | "cpu" (cpu is refused: vLLM rows need a GPU)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from bench.errors import BenchError
from kit.locks import lock_versions
from kit.results import Workload

VLLM_VERSION = lock_versions("vllm")["vllm"]  # the study's, as images/vllm's lock pins it
STUDY_SERIES = ".".join(VLLM_VERSION.split(".")[:2])

# Minimum compute capability of each kernel, per vLLM series, as that version's classes declare it
# (AWQConfig / AWQMarlinConfig.get_min_capability(); tests/vllm checks each image's table against its real
# classes): vLLM 0.12.0 runs marlin from Ampere (8.0) on, vLLM 0.20.0 from Turing (7.5) on, so on a T4 too.
MIN_CAPABILITY_BY_SERIES: dict[str, dict[str, tuple[int, int]]] = {
    "0.12": {"awq": (7, 5), "awq_marlin": (8, 0)},
    "0.20": {"awq": (7, 5), "awq_marlin": (7, 5)},
}
QUANTIZATIONS = ("awq", "awq_marlin")
LABELS = {"awq": "vLLM (awq)", "awq_marlin": "vLLM (awq_marlin)"}

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


# --------------------------------------------------------------------------- checks (before any engine)


def quantization_of(args: argparse.Namespace) -> str:
    q = getattr(args, "quantization", None)
    if q not in QUANTIZATIONS:
        raise BenchError(
            f"The vLLM backend needs --quantization awq or awq_marlin (got {q!r}). It is passed to vLLM explicitly: "
            "left unset, vLLM 0.12 silently upgrades an AWQ checkpoint to awq_marlin, so an 'awq' row would "
            "measure the marlin kernel."
        )
    return q


def check_device(device: Optional[str]) -> None:
    """vLLM rows need an NVIDIA GPU; refuse a CPU run with one paragraph."""
    if device == "cpu":
        raise BenchError(
            "--device cpu: the vLLM rows need an NVIDIA GPU (the vllm 0.12.0 wheel is a CUDA build and its AWQ "
            "kernels are CUDA kernels). On a machine without a GPU, run the transformers backend "
            "(`nox -s bench-hf -- --device cpu`) or the CPU demo (`nox -s demo`)."
        )


def vllm_series(version: Optional[str]) -> str:
    """"0.20.0" -> "0.20"; a version the kit has no table for gets the study's (0.12) rule."""
    parts = (version or "").split(".")
    series = ".".join(parts[:2])
    return series if series in MIN_CAPABILITY_BY_SERIES else STUDY_SERIES


def min_capability(quantization: str, series: str = STUDY_SERIES) -> tuple[int, int]:
    return MIN_CAPABILITY_BY_SERIES[series][quantization]


def check_capability(quantization: str, capability: Optional[tuple[int, int]], gpu_name: str = "this GPU",
                     series: str = STUDY_SERIES) -> None:
    """Refuse a kernel the GPU cannot run, before vLLM builds an engine.

    capability: (major, minor) from torch.cuda.get_device_capability(), or None when unknown;
    series: the vLLM series that will run ("0.12", "0.20"), whose kernels have their own minimums.
    """
    need = min_capability(quantization, series)
    if capability is None:
        raise BenchError(
            f"Could not read the compute capability of {gpu_name}, so the {quantization} kernel's requirement "
            f"(compute capability >= {need[0]}.{need[1]}) cannot be checked. Check that torch sees the GPU "
            "(`python -c 'import torch; print(torch.cuda.get_device_capability())'`)."
        )
    have = (int(capability[0]), int(capability[1]))
    if have >= need:
        return
    if quantization == "awq_marlin" and need > min_capability("awq", series):
        raise BenchError(
            f"vLLM {series}'s awq_marlin kernel needs compute capability >= {need[0]}.{need[1]} (Ampere or newer: "
            f"A100, A10, L4, H100, RTX 30xx and later), but {gpu_name} is {have[0]}.{have[1]} (a T4 is 7.5). The "
            "awq_marlin row cannot run on this GPU with this vLLM; run only the awq row here (`--quantization awq`, "
            "which needs 7.5), use vLLM 0.20 (`--vllm 0.20`, whose marlin runs from 7.5 on), or an Ampere-or-newer "
            "GPU. The published awq_marlin numbers were taken on an A100-SXM4-80GB."
        )
    raise BenchError(
        f"vLLM {series}'s {quantization} kernel needs compute capability >= {need[0]}.{need[1]} (Turing or newer: "
        f"T4, A100, L4, H100 ...), but {gpu_name} is {have[0]}.{have[1]}. Neither vLLM AWQ row can run on this GPU; "
        "use a newer one."
    )


def check_checkpoint(config: dict[str, Any], model: str) -> None:
    """The vLLM rows measure AWQ kernels: refuse a checkpoint without an AWQ quantization_config."""
    if not config:
        return  # the driver could not read config.json; vLLM will say what is wrong with it
    qc = config.get("quantization_config")
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    if str(method).lower() != "awq":
        raise BenchError(
            f"{model}: config.json has no AWQ quantization_config (quant_method is {method!r}). The vLLM rows measure "
            "vLLM's awq and awq_marlin kernels and need an AWQ checkpoint such as Qwen/Qwen3-8B-AWQ, or "
            "--synthetic qwen3-8b-awq for random AWQ weights of the same shape."
        )


def has_tokenizer(model_dir: str | Path) -> bool:
    d = Path(model_dir)
    return any((d / name).is_file() for name in TOKENIZER_FILES)


def max_model_len_for(workload: Workload, args: argparse.Namespace) -> int:
    needed = workload.input_len + workload.output_len
    asked = _opt(args, "max_model_len", None)
    if asked is None:
        return needed
    asked = int(asked)
    if asked < needed:
        raise BenchError(
            f"--max-model-len {asked} is shorter than --input-len + --output-len ({needed}). Raise it or leave it unset "
            "(default: exactly input + output)."
        )
    return asked


def max_position_check(config: dict[str, Any], max_model_len: int, model: str) -> None:
    limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if isinstance(limit, int) and max_model_len > limit:
        raise BenchError(
            f"{model}: max_model_len {max_model_len} (input + output, or --max-model-len) exceeds the model's "
            f"max_position_embeddings ({limit}). Shorten --input-len/--output-len."
        )


# --------------------------------------------------------------------------- what vLLM is asked for


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
        "max_model_len": max_model_len_for(workload, args),
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
    """How a row's engine settings differ from the study's configuration (empty: the study's own).

    The study's vLLM 0.12.0 ran with its defaults: torch.compile + CUDA graphs, async scheduling off.
    The report fills week-1 cells only with runs whose variant is empty and lists the others beside them.
    """
    out = []
    if engine_kw.get("enforce_eager"):
        out.append("enforce_eager (no CUDA graphs, no torch.compile)")
    if engine_kw.get("async_scheduling"):
        out.append("async scheduling on")
    return out


def sampling_kwargs(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of vllm.SamplingParams; output_kind is the RequestOutputKind member name.

    Exactly N tokens: max_tokens = min_tokens = N and ignore_eos (min_tokens masks the stop
    tokens, as the transformers backend's min_new_tokens does). Greedy (temperature 0), so the
    seed changes nothing but is recorded. No detokenization: only token ids are counted.
    """
    n = workload.output_len
    return {
        "n": 1,
        "temperature": 0.0,
        "max_tokens": n,
        "min_tokens": n,
        "ignore_eos": True,
        "seed": int(_opt(args, "seed", workload.seed)),
        "detokenize": False,
        "output_kind": OUTPUT_KIND,
    }


def backend_label(quantization: str) -> str:
    return LABELS[quantization]


def read_config(model_dir: str | Path) -> dict[str, Any]:
    try:
        return json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
