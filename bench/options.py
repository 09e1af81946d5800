"""Workload options shared by every container-side entry point, and their early validation.

Torch-free and numpy-free: the host CLI (kit/cli.py) imports this module to check the options
it passes through (`validate_passthrough`) before any image build or model load.

Defaults follow `vllm bench latency` (vLLM 0.12.0): input 32 tokens, output 128 tokens,
10 warm-up runs, 30 measured iterations, at batch size 1 (vLLM's own default batch is 8;
the study is batch 1). The published study does not state its lengths, so these are a
choice, printed in every report.

    --model ID|PATH       hub id (default Qwen/Qwen3-8B-AWQ) or a local checkpoint folder
    --revision REV        hub branch/tag/commit; the commit actually loaded is always recorded
    --synthetic CONFIG    random-weight AWQ checkpoint of a named config (qwen3-8b-awq, tiny)
                          or a config.json path, generated once into $KIT_CACHE_DIR/synthetic/
    --synthetic-seed N    weight seed of that checkpoint (default 0; part of its cache folder name)
    --input-len N         prompt tokens (default 32)
    --output-len N        generated tokens, exactly, EOS ignored (default 128; at least 2)
    --warmup N            un-timed runs of the same shapes first (default 10)
    --iters N             measured iterations (default 30)
    --seed N              seed of the prompt token ids (default 0); every backend gets the same ids
    --device cuda|cpu     default: cuda when torch sees a GPU, else cpu (CPU runs are labelled)
  vLLM only:
    --quantization awq|awq_marlin   passed to vLLM explicitly (unset, vLLM upgrades awq to awq_marlin)
    --enforce-eager       no torch.compile / CUDA graphs (recorded either way)
    --max-model-len N     default input-len + output-len
    --gpu-memory-utilization F      default 0.9
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from bench.errors import BenchError

DEFAULT_MODEL = "Qwen/Qwen3-8B-AWQ"
DEFAULT_INPUT_LEN = 32  # vllm bench latency --input-len
DEFAULT_OUTPUT_LEN = 128  # vllm bench latency --output-len
DEFAULT_WARMUP = 10  # vllm bench latency --num-iters-warmup
DEFAULT_ITERS = 30  # vllm bench latency --num-iters
DEFAULT_SEED = 0
BACKENDS = ("transformers", "vllm")
VLLM_QUANTIZATIONS = ("awq", "awq_marlin")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
COMMANDS = ("bench-hf", "bench-vllm", "profile", "demo", "run")


def synthetic_config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json") if not p.name.endswith(".generation_config.json"))


class _Parser(argparse.ArgumentParser):
    """argparse that raises BenchError instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise BenchError(f"{self.prog}: {message}. Run `{self.prog} --help` for the options and their defaults.")


def _positive(name: str, minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be at least {minimum}, got {value}")
        return value

    parse.__name__ = name
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def add_workload_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("workload (shared by every backend and the profiler)")
    g.add_argument("--model", default=None,
                   help=f"hub id or local checkpoint folder (default {DEFAULT_MODEL}; not with --synthetic)")
    g.add_argument("--revision", default=None,
                   help="hub revision (branch, tag or commit); the resolved commit is recorded")
    g.add_argument("--synthetic", default=None, metavar="CONFIG",
                   help=f"random-weight AWQ checkpoint of a named config ({', '.join(synthetic_config_names())}) or a "
                        "config.json path, generated once into $KIT_CACHE_DIR/synthetic/<config>-<seed>/")
    g.add_argument("--synthetic-seed", type=_positive("--synthetic-seed", 0), default=0,
                   help="weight seed of the synthetic checkpoint (default 0)")
    g.add_argument("--input-len", type=_positive("--input-len", 1), default=DEFAULT_INPUT_LEN,
                   help=f"prompt tokens (default {DEFAULT_INPUT_LEN}, as vllm bench latency)")
    g.add_argument("--output-len", type=_positive("--output-len", 2), default=DEFAULT_OUTPUT_LEN,
                   help=f"generated tokens, exactly, EOS ignored (default {DEFAULT_OUTPUT_LEN}, as vllm bench latency; "
                        "at least 2 so that TPOT exists)")
    g.add_argument("--warmup", type=_positive("--warmup", 0), default=DEFAULT_WARMUP,
                   help=f"un-timed runs of the same shapes (default {DEFAULT_WARMUP}, as vllm bench latency)")
    g.add_argument("--iters", type=_positive("--iters", 1), default=DEFAULT_ITERS,
                   help=f"measured iterations (default {DEFAULT_ITERS}, as vllm bench latency)")
    g.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the prompt token ids (default 0)")
    g.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="cuda or cpu (default auto: cuda when torch sees a GPU); CPU results are labelled as such")


def add_vllm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vLLM only")
    g.add_argument("--quantization", choices=VLLM_QUANTIZATIONS, default=None,
                   help="awq or awq_marlin, passed explicitly (left unset vLLM silently upgrades awq to awq_marlin)")
    g.add_argument("--enforce-eager", action="store_true", help="disable torch.compile and CUDA graphs")
    g.add_argument("--max-model-len", type=_positive("--max-model-len", 2), default=None,
                   help="default: input-len + output-len")
    g.add_argument("--gpu-memory-utilization", type=_fraction, default=0.9, help="default 0.9")
    g.add_argument("--async-scheduling", choices=("on", "off"), default="off",
                   help="vLLM's async scheduling, always passed explicitly (default off: vLLM 0.12.0's default, "
                        "the study's version; vLLM 0.20 turns it on when unset)")


_VLLM_ONLY = ("--quantization", "--enforce-eager", "--max-model-len", "--gpu-memory-utilization",
              "--async-scheduling")


def build_parser(command: str = "run",
                 extra: Optional[Callable[[argparse.ArgumentParser], None]] = None) -> argparse.ArgumentParser:
    """The parser of `python -m bench run` ("run"), or of the workload part of another entry point.

    `extra` adds an entry point's own options (e.g. the profiler's).
    """
    progs = {"run": "python -m bench run", "profile": "python profile/run_profile.py"}
    prog = progs.get(command, f"nox -s {command} --")
    p = _Parser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    if command == "run":
        p.add_argument("--backend", choices=BACKENDS, required=True)
    add_workload_args(p)
    if command in ("run", "bench-vllm"):
        add_vllm_args(p)
    if extra is not None:
        extra(p)
    return p


def check_args(ns: argparse.Namespace, backend: Optional[str]) -> argparse.Namespace:
    """Cross-option checks; fills derived defaults (model). Raises BenchError."""
    if ns.synthetic and ns.model:
        raise BenchError("--model and --synthetic are exclusive: --synthetic CONFIG generates a random-weight "
                         "checkpoint of that config; --model names a real one. Pass one of them.")
    if ns.synthetic and ns.revision:
        raise BenchError("--revision applies to hub models only; a --synthetic checkpoint has no revision. Drop it.")
    if ns.synthetic:
        names = synthetic_config_names()
        path = Path(ns.synthetic)
        if ns.synthetic not in names and not (path.is_file() or (path / "config.json").is_file()):
            raise BenchError(f"--synthetic {ns.synthetic!r}: expected one of {', '.join(names)} or the path to a "
                             "config.json with an AWQ quantization_config.")
    elif not ns.model:
        ns.model = DEFAULT_MODEL
    if ns.model and _looks_like_path(ns.model) and not Path(os.path.expanduser(ns.model)).exists():
        raise BenchError(f"--model {ns.model!r}: no such local folder. Pass an existing checkpoint folder (with "
                         "config.json and *.safetensors), a hub id such as Qwen/Qwen3-8B-AWQ, or --synthetic "
                         "qwen3-8b-awq.")
    if backend == "vllm":
        if getattr(ns, "quantization", None) is None:
            raise BenchError("The vLLM backend needs --quantization awq or awq_marlin: left unset, vLLM silently "
                             "upgrades an AWQ checkpoint to awq_marlin, so the awq row would not be what it says.")
        if ns.device == "cpu":
            raise BenchError("--device cpu: the vLLM rows need an NVIDIA GPU (vLLM 0.12's CUDA build); the CPU demo "
                             "uses the transformers backend only. Drop --device cpu or use --backend transformers.")
        if ns.max_model_len is not None and ns.max_model_len < ns.input_len + ns.output_len:
            raise BenchError(f"--max-model-len {ns.max_model_len} is shorter than --input-len + --output-len "
                             f"({ns.input_len + ns.output_len}). Raise it or leave it unset.")
    return ns


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def parse_run_args(argv: Sequence[str]) -> argparse.Namespace:
    """`python -m bench run` options, checked. Raises BenchError."""
    ns = build_parser("run").parse_args(list(argv))
    return check_args(ns, ns.backend)


def validate_passthrough(command: str, argv: Sequence[str]) -> None:
    """Check the workload options the host passes through to `command`, before anything long starts.

    command: bench-hf | bench-vllm | profile | demo. Raises BenchError (a KitError) with one
    actionable paragraph. For "profile", options this module does not know are left to the
    profiler's own parser (it may add its own).
    """
    argv = list(argv)
    if command not in COMMANDS:
        raise BenchError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}.")
    if command == "run":
        parse_run_args(argv)
        return
    if command == "bench-hf":
        used = [a for a in argv if a.split("=", 1)[0] in _VLLM_ONLY]
        if used:
            raise BenchError(f"{', '.join(used)}: vLLM-only option(s), not for the transformers backend. "
                             "Drop them, or run `nox -s bench-vllm` instead.")
    if command == "bench-vllm":
        if any(a.split("=", 1)[0] == "--quantization" for a in argv):  # pragma: no cover - kit/cli consumes it
            raise BenchError("--quantization is set by `nox -s bench-vllm` itself (one row per value).")
        p = build_parser("bench-vllm")
        ns = p.parse_args(argv)
        ns.quantization = "awq"  # the host adds it per row
        check_args(ns, "vllm")
        return
    p = build_parser(command)
    if command == "profile":
        ns, _unknown = p.parse_known_args(argv)
    else:
        ns = p.parse_args(argv)
    check_args(ns, "transformers")
