"""One workload for every backend: model resolution (local folder, synthetic config or hub id, checked before any
weight is read), the prompt token ids, the device, the result's Workload. torch only in the device functions.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

from bench.api import ResolvedModel
from core.errors import BenchError
from core.rules import check_context, read_config, require_awq
from core.results import Workload

WEIGHT_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model", "*.tiktoken"]


def require_gpu(what: str, hint: str = "") -> None:
    """A BenchError saying how to make the GPU visible, unless torch sees one."""
    import torch

    if not torch.cuda.is_available():
        raise BenchError(
            f"{what}, but torch sees no GPU here (torch.cuda.is_available() is False; torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda}). With Docker, check that the NVIDIA runtime is installed (`docker info` "
            "lists an nvidia runtime) and the container was started with GPUs; locally, that the driver works "
            f"(`nvidia-smi`).{hint}"
        )


def resolve_device(name: Optional[str]) -> str:
    if name in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        require_gpu("--device cuda", " For a CPU run, pass --device cpu.")
    return name


def special_token_ids(config: dict[str, Any]) -> set[int]:
    values = [config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")]
    return {x for v in values for x in (v if isinstance(v, list) else [v]) if isinstance(x, int)}


def regular_vocab_limit(config: dict[str, Any], extra_special: Iterable[int] = ()) -> int:
    """Ids below this are ordinary tokens: the lowest special id in the upper half of the vocabulary (these
    tokenizers put their specials after the ordinary ids; Qwen3: 0..151642 ordinary, specials from 151643)."""
    vocab = int(config["vocab_size"])
    specials = special_token_ids(config) | set(extra_special)
    high = [i for i in specials if vocab // 2 <= i < vocab]
    return min(high) if high else vocab


def prompt_token_ids(config: dict[str, Any], input_len: int, seed: int, model_dir: Optional[str] = None) -> list[int]:
    """input_len ids drawn uniformly from the ordinary vocabulary (never a special or added token), from `seed`
    alone: Python's random.Random seeded with a string gives the same ids on any platform and Python, so the
    transformers and vLLM images produce identical prompts."""
    specials = special_token_ids(config)
    with contextlib.suppress(OSError, json.JSONDecodeError):  # the added tokens, when the checkpoint ships them
        tc = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8")) if model_dir else {}
        specials |= {int(k) for k in (tc.get("added_tokens_decoder") or {}) if str(k).isdigit()}
    limit = regular_vocab_limit(config, specials)
    rng = random.Random(f"awq-kit-prompt-ids:{seed}")
    ids: list[int] = []
    while len(ids) < input_len:
        x = rng.randrange(limit)
        if x not in specials:
            ids.append(x)
    return ids


def check_lengths(config: dict[str, Any], input_len: int, output_len: int, where: str) -> None:
    check_context(config, input_len + output_len, f"--input-len {input_len} + --output-len {output_len}", where)


def resolve_model(args: argparse.Namespace) -> ResolvedModel:
    """Local path, synthetic config or hub id -> a checkpoint on local disk. Checks before weights are read."""
    if getattr(args, "synthetic", None):
        from bench import synthetic

        name, config, _gen = synthetic.load_config(args.synthetic)
        # load_config has checked the AWQ config; the lengths are checked before generating gigabytes.
        check_lengths(config, args.input_len, args.output_len, f"--synthetic {args.synthetic}")
        cache = Path(os.environ.get("KIT_CACHE_DIR") or Path.home() / ".cache" / "awq-kit")  # set by every runner
        name, path = synthetic.ensure_synthetic(args.synthetic, cache, seed=args.synthetic_seed)
        return ResolvedModel(path=str(path), model_id=f"synthetic:{name}", source="synthetic", synthetic_config=name,
                             config=config)
    model = os.path.expanduser(args.model)
    if Path(model).is_dir():
        config = read_config(Path(model), f"--model {args.model}")
        require_awq(config, f"--model {args.model}")
        check_lengths(config, args.input_len, args.output_len, f"--model {args.model}")
        if args.revision:
            print(f"note: --revision {args.revision} ignored for the local folder {model}", file=sys.stderr)
        return ResolvedModel(path=str(Path(model).resolve()), model_id=args.model, source="local", config=config)
    return _resolve_hub(args)


def _hub_error(model_id: str, revision: Optional[str], err: BaseException) -> BenchError:
    from huggingface_hub import errors as hf_errors

    rev = f"@{revision}" if revision else ""
    hf_home = os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if isinstance(err, hf_errors.GatedRepoError):
        return BenchError(f"{model_id} is a gated model: accept its terms on huggingface.co with your account, then "
                          "pass a token in HF_TOKEN (it reaches the container at run time only and is never stored).")
    if isinstance(err, hf_errors.RevisionNotFoundError):
        return BenchError(f"{model_id} has no revision {revision!r} on the hub. Pass an existing branch, tag or "
                          "commit to --revision, or leave it out for main.")
    if isinstance(err, hf_errors.RepositoryNotFoundError):
        return BenchError(f"No model {model_id!r} on the Hugging Face hub (or it is private and HF_TOKEN is not set). "
                          "Check the spelling (the study's model is Qwen/Qwen3-8B-AWQ); a local checkpoint must be an "
                          "existing folder; --synthetic qwen3-8b-awq needs no download.")
    if isinstance(err, hf_errors.HFValidationError):
        return BenchError(f"--model {model_id!r} is neither an existing local folder nor a valid hub id (owner/name). "
                          "Pass a checkpoint folder, a hub id such as Qwen/Qwen3-8B-AWQ, or --synthetic qwen3-8b-awq.")
    if isinstance(err, (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled)) or offline:
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        return BenchError(f"{why} and the Hugging Face cache ({hf_home}) holds no copy of {model_id}{rev}. Download "
                          f"it once where there is network (`huggingface-cli download {model_id}`"
                          f"{' --revision ' + revision if revision else ''}) and mount or copy that cache here, pass a "
                          "local checkpoint folder with --model, or use --synthetic qwen3-8b-awq (no download).")
    return BenchError(f"Fetching {model_id}{rev} from the Hugging Face hub failed ({type(err).__name__}: {err}). "
                      "Check the network or proxy (HTTPS_PROXY, a CA bundle), or use a local folder / --synthetic.")


def _resolve_hub(args: argparse.Namespace) -> ResolvedModel:
    from huggingface_hub import hf_hub_download, snapshot_download  # both stacks' locks ship it

    model_id, revision = args.model, args.revision
    try:
        config_path = Path(hf_hub_download(model_id, "config.json", revision=revision))
    except Exception as e:  # the hub's own errors, and requests / httpx connection errors
        raise _hub_error(model_id, revision, e) from e
    commit = config_path.parent.name  # .../snapshots/<commit>/config.json
    config = read_config(config_path.parent, f"{model_id}@{commit}")
    require_awq(config, f"{model_id}@{commit[:12]}")
    check_lengths(config, args.input_len, args.output_len, f"{model_id}@{commit[:12]}")
    try:
        path = snapshot_download(model_id, revision=commit, allow_patterns=WEIGHT_PATTERNS)
    except Exception as e:
        raise _hub_error(model_id, revision, e) from e
    return ResolvedModel(path=path, model_id=model_id, source="hub", revision=revision, resolved_revision=commit,
                         config=config)


def build_workload(args: argparse.Namespace, model: ResolvedModel) -> Workload:
    return Workload(model=model.model_id, revision=model.revision, resolved_revision=model.resolved_revision,
                    model_source=model.source, synthetic=model.source == "synthetic",  # type: ignore[arg-type]
                    synthetic_config=model.synthetic_config, input_len=args.input_len, output_len=args.output_len,
                    batch_size=1, warmup=args.warmup, iterations=args.iters, seed=args.seed)
