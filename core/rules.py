"""The checks every step applies, each once with its one message (docs/design.md, "Each rule once")."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from core.errors import KitError
from core.locks import lock_versions

QUANTIZATIONS = ("awq", "awq_marlin")
VLLM_VERSION = lock_versions("vllm")["vllm"]  # the study's, as images/vllm's lock pins it
STUDY_SERIES = ".".join(VLLM_VERSION.split(".")[:2])

# Minimum compute capability of each kernel, per vLLM series, as that version's classes declare it
# (AWQConfig / AWQMarlinConfig.get_min_capability(); tests/vllm checks each image's table against its real
# classes): vLLM 0.12.0 runs marlin from Ampere (8.0) on, vLLM 0.20.0 from Turing (7.5) on, so on a T4 too.
MIN_CAPABILITY_BY_SERIES: dict[str, dict[str, tuple[int, int]]] = {
    "0.12": {"awq": (7, 5), "awq_marlin": (8, 0)},
    "0.20": {"awq": (7, 5), "awq_marlin": (7, 5)},
}


def visible_entry(cuda_visible_devices: Optional[str], torch_index: int = 0) -> Optional[str]:
    """The CUDA_VISIBLE_DEVICES entry torch calls cuda:<torch_index> ("" when there is none); None when unset."""
    if cuda_visible_devices is None:
        return None
    entries = cuda_visible_devices.split(",")
    return entries[torch_index].strip() if torch_index < len(entries) else ""


def names_gpu(entry: str, index: int, uuid: str) -> bool:
    """Whether a CUDA_VISIBLE_DEVICES entry names this GPU: its nvidia-smi index (the runners set
    CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA numbers GPUs the same way) or a prefix of its UUID (CUDA accepts one)."""
    return bool(entry) and (entry == str(index) or bool(uuid) and uuid.startswith(entry))


AWQ_HINT = ("Use an AWQ checkpoint such as Qwen/Qwen3-8B-AWQ, or --synthetic qwen3-8b-awq for random weights of the "
            "same shape.")


def read_config(model_dir: str | Path, where: str) -> dict[str, Any]:
    """config.json of a checkpoint folder; a missing or unreadable one is an error, never an empty config."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError(f"{where}: no config.json in {model_dir}. Point --model at a Hugging Face checkpoint folder "
                       "(config.json + *.safetensors), or pass a hub id.") from None
    except (OSError, ValueError) as e:
        raise KitError(f"{where}: cannot read {path} ({e}). Fix or re-download the checkpoint.") from None
    if not isinstance(config, dict):
        raise KitError(f"{where}: {path} holds no JSON object. Fix or re-download the checkpoint.")
    return config


def require_awq(config: dict[str, Any], where: str) -> None:
    """Every row measures AWQ int4 GEMM kernels (autoawq WQLinear_GEMM, vLLM awq / awq_marlin)."""
    qc = config.get("quantization_config")
    if not isinstance(qc, dict) or not qc:
        raise KitError(f"{where} is not an AWQ checkpoint: its config.json has no quantization_config, so it holds "
                       f"plain {config.get('torch_dtype', 'full-precision')} weights. The transformers+autoawq and "
                       f"vLLM awq/awq_marlin rows measure AWQ int4 kernels. {AWQ_HINT}")
    method = str(qc.get("quant_method", "")).lower()
    if method != "awq":
        raise KitError(f"{where} is quantized with {method or 'an unnamed method'!r}, not AWQ "
                       f"(quantization_config.quant_method). {AWQ_HINT}")
    version = str(qc.get("version", "gemm")).lower()
    if int(qc.get("bits", 4)) != 4 or version != "gemm":
        raise KitError(f"{where} is AWQ {qc.get('bits')}-bit version {version!r}; the study measures 4-bit GEMM "
                       f"checkpoints (autoawq WQLinear_GEMM, vLLM awq/awq_marlin). {AWQ_HINT}")


def check_context(config: dict[str, Any], tokens: int, what: str, where: str) -> None:
    """`tokens` (prompt + output, or vLLM's max_model_len) must fit the model's max_position_embeddings."""
    limit = config.get("max_position_embeddings")
    if isinstance(limit, int) and tokens > limit:
        raise KitError(f"{what} = {tokens} tokens is more than {where} supports (max_position_embeddings = "
                       f"{limit}). Shorten --input-len / --output-len (or --max-model-len); nothing was loaded.")


def check_max_model_len(max_model_len: Optional[int], input_len: int, output_len: int) -> int:
    """vLLM's context: exactly input + output unless asked for more; less cannot hold the request."""
    needed = input_len + output_len
    if max_model_len is None:
        return needed
    if max_model_len < needed:
        raise KitError(f"--max-model-len {max_model_len} is shorter than --input-len + --output-len ({needed}). Raise "
                       "it or leave it unset (default: exactly input + output).")
    return max_model_len


def refuse_cpu_for_vllm(device: Optional[str]) -> None:
    if device == "cpu":
        raise KitError("--device cpu: the vLLM rows need an NVIDIA GPU (the vLLM wheels are CUDA builds and their AWQ "
                       "kernels are CUDA kernels). On a machine without a GPU, run the transformers backend "
                       "(`nox -s bench-hf -- --device cpu`) or the CPU demo (`nox -s demo`).")


def vllm_series(version: Optional[str]) -> str:
    """"0.20.0" -> "0.20"; a version the kit has no table for gets the study's (0.12) rule."""
    series = ".".join((version or "").split(".")[:2])
    return series if series in MIN_CAPABILITY_BY_SERIES else STUDY_SERIES


def check_capability(quantization: str, capability: Optional[tuple[int, int]], gpu_name: str = "this GPU",
                     series: str = STUDY_SERIES) -> None:
    """Refuse a kernel the GPU cannot run, before vLLM builds an engine (and, on the host, before any build).

    capability: (major, minor), or None when unknown; series: the vLLM series that will run ("0.12", "0.20").
    """
    table = MIN_CAPABILITY_BY_SERIES[series]
    need = table[quantization]
    if capability is None:
        raise KitError(f"Could not read the compute capability of {gpu_name}, so the {quantization} kernel's "
                       f"requirement (compute capability >= {need[0]}.{need[1]}) cannot be checked. Check that torch "
                       "sees the GPU (`python -c 'import torch; print(torch.cuda.get_device_capability())'`).")
    have = (int(capability[0]), int(capability[1]))
    if have >= need:
        return
    if quantization == "awq_marlin" and need > table["awq"]:  # only marlin is out of reach: say what still runs
        era, advice = "Ampere or newer: A100, A10, L4, H100, RTX 30xx and later", (
            " (a T4 is 7.5). The awq_marlin row cannot run on this GPU with this vLLM; run only the awq row here "
            "(`--quantization awq`, which needs 7.5), use vLLM 0.20 (`--vllm 0.20`, whose marlin runs from 7.5 on), or "
            "an Ampere-or-newer GPU. The published awq_marlin numbers were taken on an A100-SXM4-80GB.")
    else:
        era = "Turing or newer: T4, A100, L4, H100 ..."
        advice = ". Neither vLLM AWQ row can run on this GPU; use a newer one."
    raise KitError(f"vLLM {series}'s {quantization} kernel needs compute capability >= {need[0]}.{need[1]} ({era}), "
                   f"but {gpu_name} is {have[0]}.{have[1]}{advice}")
