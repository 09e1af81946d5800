"""The workload spec and its one parser (docs/design.md, "One workload spec, parsed once"). Standard library only:
`python -m kit` must explain a missing host package instead of failing on import. Defaults: README, "Workload options".
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from core import ROOT
from core.errors import KitError
from core.rules import QUANTIZATIONS, check_max_model_len, refuse_cpu_for_vllm

DEFAULT_MODEL = "Qwen/Qwen3-8B-AWQ"
BACKENDS = ("transformers", "vllm")
CONFIG_DIR = ROOT / "bench" / "configs"  # the synthetic generator's named configs (data, read here by name)


@dataclass(frozen=True)
class WorkloadSpec:
    """What one step measures. Engine options apply to the vLLM backend, profile options to the profiler."""

    model: Optional[str] = None  # hub id or local folder; DEFAULT_MODEL after check_spec unless synthetic
    revision: Optional[str] = None
    synthetic: Optional[str] = None  # a named config or a config.json path
    synthetic_seed: int = 0
    input_len: int = 32  # vllm bench latency --input-len
    output_len: int = 128  # vllm bench latency --output-len
    warmup: int = 10  # vllm bench latency --num-iters-warmup
    iters: int = 30  # vllm bench latency --num-iters
    seed: int = 0
    device: str = "auto"  # auto | cuda | cpu; the container resolves auto once
    # vLLM engine
    quantization: Optional[str] = None  # awq | awq_marlin, one per row
    enforce_eager: bool = False
    max_model_len: Optional[int] = None
    gpu_memory_utilization: float = 0.9
    async_scheduling: str = "off"
    # profiler
    no_trace: bool = False
    reuse_triton_cache: bool = False

    @property
    def wants_cpu(self) -> bool:
        return self.device == "cpu"

    def replace(self, **changes) -> "WorkloadSpec":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "WorkloadSpec":
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as e:
            raise KitError(f"--workload: not a workload spec ({e}). It is written by the kit's host side; to start "
                           "a step by hand, pass the workload options (--model, --input-len, ...) instead.") from None


def synthetic_config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json") if not p.name.endswith(".generation_config.json"))


class Parser(argparse.ArgumentParser):
    """argparse that raises KitError (one paragraph) instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise KitError(f"{self.prog}: {message}. Run `{self.prog} --help` for the options and their defaults.")


def _number(name: str, convert: Callable[[str], float], ok: Callable[[float], bool], want: str) -> Callable:
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            kind = "a whole number" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{name} must be {want}, got {value}")
        return value

    return parse


def _at_least(name: str, minimum: int) -> Callable[[str], int]:
    return _number(name, int, lambda v: v >= minimum, f"at least {minimum}")


def _quantizations(text: str) -> tuple[str, ...]:
    qs = tuple(q.strip() for q in text.split(",") if q.strip())
    if not qs or any(q not in QUANTIZATIONS for q in qs):
        raise argparse.ArgumentTypeError(f"expected awq, awq_marlin or both comma-separated, got {text!r}")
    return qs


def add_workload_args(p: argparse.ArgumentParser, *, vllm: bool = False, profile: bool = False,
                      quantization_default: Optional[str] = None) -> None:
    """The workload options; `vllm` adds the engine's, `profile` the profiler's. One definition for every
    entry point, host and container. quantization_default: bench-vllm runs both rows unless told otherwise."""
    g = p.add_argument_group("workload (shared by every backend and the profiler)")
    g.add_argument("--model", help=f"hub id or local checkpoint folder (default {DEFAULT_MODEL}; not with --synthetic)")
    g.add_argument("--revision", help="hub revision (branch, tag or commit); the resolved commit is recorded")
    g.add_argument("--synthetic", metavar="CONFIG",
                   help=f"random-weight AWQ checkpoint of a named config ({', '.join(synthetic_config_names())}) or a "
                        "config.json path, generated once into $KIT_CACHE_DIR/synthetic/<config>-<seed>/")
    g.add_argument("--synthetic-seed", type=_at_least("--synthetic-seed", 0), default=0,
                   help="weight seed of the synthetic checkpoint (default 0)")
    for flag, minimum, what in (("--input-len", 1, "prompt tokens"),
                                ("--output-len", 2, "generated tokens, exactly, EOS ignored; at least 2 so that TPOT "
                                                    "exists"),
                                ("--warmup", 0, "un-timed runs of the same shapes"),
                                ("--iters", 1, "measured iterations")):
        g.add_argument(flag, type=_at_least(flag, minimum), default=getattr(WorkloadSpec, flag[2:].replace("-", "_")),
                       help=f"{what} (default %(default)s, as vllm bench latency)")
    g.add_argument("--seed", type=int, default=0, help="seed of the prompt token ids (default 0)")
    g.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="cuda or cpu (default auto: cuda when torch sees a GPU); CPU results are labelled as such")
    if vllm:
        v = p.add_argument_group("vLLM only")
        v.add_argument("--quantization", type=_quantizations,
                       default=_quantizations(quantization_default) if quantization_default else None,
                       help="awq or awq_marlin, passed to vLLM explicitly (left unset vLLM silently upgrades awq to "
                            "awq_marlin)" + (f"; comma-separated for several rows (default {quantization_default})"
                                             if quantization_default else ""))
        v.add_argument("--enforce-eager", action="store_true", help="disable torch.compile and CUDA graphs")
        v.add_argument("--max-model-len", type=_at_least("--max-model-len", 2), help="default: input-len + output-len")
        fraction = _number("--gpu-memory-utilization", float, lambda x: 0 < x <= 1, "in (0, 1]")
        v.add_argument("--gpu-memory-utilization", type=fraction, default=0.9, help="default 0.9")
        v.add_argument("--async-scheduling", choices=("on", "off"), default="off",
                       help="vLLM's async scheduling, always passed explicitly (default off: vLLM 0.12.0's default, "
                            "the study's version; vLLM 0.20 turns it on when unset)")
    if profile:
        f = p.add_argument_group("profiler only")
        f.add_argument("--no-trace", action="store_true", help="do not export Chrome traces")
        f.add_argument("--reuse-triton-cache", action="store_true",
                       help="keep Triton's on-disk kernel cache: 'cold' then excludes JIT compilation")


def specs_from_namespace(ns: argparse.Namespace, backend: Optional[str]) -> list[WorkloadSpec]:
    """The checked spec of each row the options ask for: one, or one per --quantization value for vLLM."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(WorkloadSpec)
              if getattr(ns, f.name, None) is not None}
    quantizations = values.pop("quantization", None) or (None,)
    return [check_spec(WorkloadSpec(**values, quantization=q), backend) for q in quantizations]


def check_spec(spec: WorkloadSpec, backend: Optional[str]) -> WorkloadSpec:
    """Cross-option checks, once; fills the default model. Raises KitError with one paragraph."""
    if spec.synthetic and spec.model:
        raise KitError("--model and --synthetic are exclusive: --synthetic CONFIG generates a random-weight "
                       "checkpoint of that config; --model names a real one. Pass one of them.")
    if spec.synthetic and spec.revision:
        raise KitError("--revision applies to hub models only; a --synthetic checkpoint has no revision. Drop it.")
    if spec.synthetic:
        names = synthetic_config_names()
        path = Path(spec.synthetic)
        if spec.synthetic not in names and not (path.is_file() or (path / "config.json").is_file()):
            raise KitError(f"--synthetic {spec.synthetic!r}: expected one of {', '.join(names)} or the path to a "
                           "config.json with an AWQ quantization_config.")
    elif not spec.model:
        spec = spec.replace(model=DEFAULT_MODEL)
    local = spec.model and (spec.model.startswith(("/", "./", "../", "~")) or spec.model.count("/") > 1
                            or os.sep != "/" and os.sep in spec.model)
    if local and not Path(os.path.expanduser(spec.model)).exists():
        raise KitError(f"--model {spec.model!r}: no such local folder. Pass an existing checkpoint folder (with "
                       "config.json and *.safetensors), a hub id such as Qwen/Qwen3-8B-AWQ, or --synthetic "
                       "qwen3-8b-awq.")
    if backend == "vllm":
        if spec.quantization not in QUANTIZATIONS:
            raise KitError("The vLLM backend needs --quantization awq or awq_marlin: left unset, vLLM silently "
                           "upgrades an AWQ checkpoint to awq_marlin, so the awq row would not be what it says.")
        refuse_cpu_for_vllm(spec.device)
        check_max_model_len(spec.max_model_len, spec.input_len, spec.output_len)
    return spec


def add_spec_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", metavar="JSON",
                   help="the whole workload as the kit's host side hands it over (instead of the options below)")


def parse_spec(parser: argparse.ArgumentParser, argv: Sequence[str],
               backend: Optional[str] = None) -> tuple[argparse.Namespace, WorkloadSpec]:
    """A container entry point's options: `--workload JSON` from the host, or the workload options by hand.
    backend: the entry point's, else its --backend option."""
    ns = parser.parse_args(list(argv))
    backend = backend or getattr(ns, "backend", None)
    if ns.workload:
        given = [a for a in argv if a.startswith("--") and a.split("=", 1)[0] not in ("--workload", "--backend")]
        if given:
            raise KitError(f"--workload carries the whole workload; {', '.join(given)} cannot be added to it. Pass "
                           "either --workload JSON or the workload options.")
        return ns, check_spec(WorkloadSpec.from_json(ns.workload), backend)
    specs = specs_from_namespace(ns, backend)
    if len(specs) != 1:
        raise KitError("One run measures one vLLM row: pass a single --quantization (awq or awq_marlin); "
                       "`nox -s bench-vllm` runs one step per row.")
    return ns, specs[0]
