"""The exact arguments the vLLM backend builds, handed to the real vLLM classes (CPU, no engine).

The suite runs once per vLLM stack (`nox -s tests-vllm` runs it in the vllm image, vLLM 0.12.0; `nox -s
tests-vllm-0.20` in the vllm-0.20 image, vLLM 0.20.0): each run checks against the version its stack's lock pins
(KIT_STACK, set by the runner).

Every object here comes from bench.vllm_args / bench.vllm_backend's own builders
(engine_kwargs -> make_engine_args, sampling_kwargs -> make_sampling_params, make_prompt), so a
renamed or retyped vLLM argument fails here rather than on a GPU host.

What cannot be checked without a GPU (AsyncEngineArgs.create_engine_config raises
"Device string must not be empty"): the compilation / CUDA-graph settings vLLM resolves, and
starting AsyncLLM. Those are recorded at run time in Backend.settings.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json

import os

import pytest

from bench import vllm_args, vllm_backend

from core import engine_samples, rules
from bench.provenance import lock_versions
from core.results import Workload

STACK = os.environ.get("KIT_STACK", "vllm")
PINNED = lock_versions(STACK)["vllm"]  # what this image's lock installs
STUDY = lock_versions("vllm")["vllm"]  # the study's version (images/vllm)


def _workload(**kw) -> Workload:
    base = dict(model="tiny", model_source="synthetic", synthetic=True, input_len=32, output_len=128, warmup=1,
                iterations=2, seed=0)
    base.update(kw)
    return Workload(**base)


def _args(**kw) -> argparse.Namespace:
    base = dict(quantization="awq", enforce_eager=False, seed=0, device="cuda", max_model_len=None,
                gpu_memory_utilization=0.9)
    base.update(kw)
    return argparse.Namespace(**base)


def _has_cuda_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def test_vllm_is_the_pinned_version(vllm_mod):
    assert vllm_mod.__version__ == PINNED, (
        f"tests/vllm check the kit against vllm {PINNED}; this environment has {vllm_mod.__version__}"
    )
    assert rules.VLLM_VERSION == STUDY == "0.12.0"


def test_tiny_checkpoint_is_awq_and_marlin_friendly(tiny_ckpt):
    config = json.loads((tiny_ckpt / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "awq"
    for size in (config["hidden_size"], config["num_attention_heads"] * config["head_dim"],
                 config["intermediate_size"]):
        assert size % 128 == 0
    vllm_args.check_checkpoint(config, "tiny")
    assert not vllm_args.has_tokenizer(tiny_ckpt)


@pytest.mark.parametrize("quantization", ["awq", "awq_marlin"])
@pytest.mark.parametrize("enforce_eager", [False, True])
def test_async_engine_args_take_the_kit_kwargs(vllm_mod, tiny_ckpt, quantization, enforce_eager):
    from vllm.engine.arg_utils import AsyncEngineArgs

    kwargs = vllm_args.engine_kwargs(tiny_ckpt, _workload(), _args(quantization=quantization,
                                                                   enforce_eager=enforce_eager))
    field_names = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    assert set(kwargs) <= field_names, set(kwargs) - field_names
    ea = vllm_backend.make_engine_args(kwargs)
    assert isinstance(ea, AsyncEngineArgs)
    for key, value in kwargs.items():
        assert getattr(ea, key) == value, key
    assert ea.quantization == quantization and ea.dtype == "float16"
    assert ea.enable_prefix_caching is False and ea.disable_log_stats is False
    assert ea.skip_tokenizer_init is True and ea.max_model_len == 160 and ea.enforce_eager is enforce_eager
    assert ea.async_scheduling is False  # explicit: vLLM 0.20 would turn it on when left unset


def test_async_scheduling_default_is_what_the_kit_says(vllm_mod):
    """The study's vLLM 0.12.0 defaults to async_scheduling False; 0.20 leaves it unset (None) and turns it on.
    The kit always passes it, so the default only matters for the README's claim, checked here per version."""
    from vllm.config import SchedulerConfig
    from vllm.engine.arg_utils import AsyncEngineArgs

    default = {f.name: f.default for f in dataclasses.fields(AsyncEngineArgs)}["async_scheduling"]
    assert default == SchedulerConfig.__dataclass_fields__["async_scheduling"].default
    assert default is (False if PINNED == STUDY else None)
    assert vllm_args.STUDY_ASYNC_SCHEDULING == "off"


def test_model_config_from_the_kit_engine_args_awq(vllm_mod, tiny_ckpt):
    """vLLM's own path from our engine args to a ModelConfig (the same call create_engine_config makes)."""
    import torch

    ea = vllm_backend.make_engine_args(vllm_args.engine_kwargs(tiny_ckpt, _workload(), _args(quantization="awq")))
    mc = ea.create_model_config()
    assert mc.quantization == "awq"  # explicit: not upgraded to awq_marlin
    assert mc.dtype == torch.float16
    assert mc.max_model_len == 160
    assert mc.skip_tokenizer_init is True
    assert mc.enforce_eager is False
    assert mc.seed == 0


def test_model_config_direct_awq(vllm_mod, tiny_ckpt):
    from vllm.config import ModelConfig

    kw = vllm_args.engine_kwargs(tiny_ckpt, _workload(), _args(quantization="awq", enforce_eager=True))
    mc = ModelConfig(model=kw["model"], quantization=kw["quantization"], dtype=kw["dtype"], seed=kw["seed"],
                     max_model_len=kw["max_model_len"], enforce_eager=kw["enforce_eager"],
                     skip_tokenizer_init=kw["skip_tokenizer_init"])
    assert mc.quantization == "awq" and mc.enforce_eager is True


def test_awq_marlin_model_config_needs_a_gpu(vllm_mod, tiny_ckpt):
    """FIELD-NOTES: without a GPU, awq_marlin is rejected. Why, in vLLM 0.12.0: the platform is not CUDA
    (no GPU: UnspecifiedPlatform, device capability None, read as -1), so
    AWQMarlinConfig.is_awq_marlin_compatible() is False, the checkpoint stays "awq", and ModelConfig
    refuses the explicit quantization="awq_marlin" as a mismatch. On a T4 (7.5) the same happens via
    check_marlin_supported (needs 8.0); the kit refuses that case up front with its own message.
    On a GPU of compute capability >= 8.0 the same arguments construct."""
    from vllm.config import ModelConfig

    kw = vllm_args.engine_kwargs(tiny_ckpt, _workload(), _args(quantization="awq_marlin"))
    build = lambda: vllm_backend.make_engine_args(kw).create_model_config()  # noqa: E731
    if _has_cuda_gpu():
        import torch

        cap = torch.cuda.get_device_capability(0)
        if cap >= (8, 0):
            assert build().quantization == "awq_marlin"
            return
    with pytest.raises(Exception) as err:
        build()
    assert "does not match the quantization method specified in the `quantization` argument (awq_marlin)" in str(
        err.value)
    with pytest.raises(Exception, match="awq_marlin"):
        ModelConfig(model=str(tiny_ckpt), quantization="awq_marlin", dtype="float16", max_model_len=160,
                    skip_tokenizer_init=True)


def test_unset_quantization_is_why_the_kit_passes_it(vllm_mod, tiny_ckpt):
    """Unset, vLLM picks the kernel itself: awq_marlin on a GPU >= 8.0, awq here (no GPU)."""
    kw = vllm_args.engine_kwargs(tiny_ckpt, _workload(), _args())
    kw["quantization"] = None
    mc = vllm_backend.make_engine_args(kw).create_model_config()
    expected = "awq"
    if _has_cuda_gpu():
        import torch

        expected = "awq_marlin" if torch.cuda.get_device_capability(0) >= (8, 0) else "awq"
    assert mc.quantization == expected


def test_capability_table_matches_vllm(vllm_mod):
    """The kit's minimum compute capabilities for this vLLM series are the ones its real classes declare."""
    from vllm.model_executor.layers.quantization.awq import AWQConfig
    from vllm.model_executor.layers.quantization.awq_marlin import AWQMarlinConfig
    from vllm.model_executor.layers.quantization.utils.marlin_utils import check_marlin_supported

    def as_int(cap):
        return cap[0] * 10 + cap[1]

    series = rules.vllm_series(vllm_mod.__version__)
    assert series == PINNED.rsplit(".", 1)[0]  # the kit has a table for this image's version
    table = rules.MIN_CAPABILITY_BY_SERIES[series]
    assert as_int(table["awq"]) == AWQConfig.get_min_capability() == 75
    assert as_int(table["awq_marlin"]) == AWQMarlinConfig.get_min_capability()
    # The Qwen3-8B-AWQ quantization (4 bit, group 128, zero point) on marlin, at given capabilities.
    uint4 = AWQMarlinConfig.TYPE_MAP[4]
    on_t4 = check_marlin_supported(uint4, group_size=128, has_zp=True, device_capability=75)
    assert on_t4 == (as_int(table["awq_marlin"]) <= 75)  # 0.12.0: no marlin on a T4; 0.20.0: yes
    assert check_marlin_supported(uint4, group_size=128, has_zp=True, device_capability=80)  # A100
    assert check_marlin_supported(uint4, group_size=128, has_zp=True, device_capability=90)  # H100/H200


def test_sampling_params_take_the_kit_kwargs(vllm_mod):
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind, SamplingType

    kwargs = vllm_args.sampling_kwargs(_workload(output_len=128, seed=3), _args(seed=3))
    sp = vllm_backend.make_sampling_params(kwargs)
    assert isinstance(sp, SamplingParams)
    assert sp.output_kind is RequestOutputKind.DELTA
    assert sp.max_tokens == sp.min_tokens == 128
    assert sp.ignore_eos is True and sp.detokenize is False
    assert sp.temperature == 0.0 and sp.n == 1 and sp.seed == 3
    assert sp.sampling_type == SamplingType.GREEDY  # the seed changes nothing
    # ignore_eos: the generation config's EOS ids do not become stop tokens (they only feed min_tokens).
    sp.update_from_generation_config({"eos_token_id": [151645, 151643]}, None)
    assert sp.stop_token_ids == []
    assert sp.all_stop_token_ids == {151645, 151643}


def _input_processor(vc):
    """V1's InputProcessor without a tokenizer (skip_tokenizer_init); 0.20 takes a renderer as its second argument."""
    from vllm.v1.engine.input_processor import InputProcessor

    if PINNED == STUDY:
        return InputProcessor(vc, None)
    from vllm.renderers import renderer_from_config

    return InputProcessor(vc, renderer_from_config(vc))


def _process(processor, request_id, prompt, sp):
    """InputProcessor.process_inputs; 0.20 also wants the engine's supported tasks (a generate-only model here)."""
    if "supported_tasks" in inspect.signature(processor.process_inputs).parameters:
        return processor.process_inputs(request_id, prompt, sp, supported_tasks=("generate",))
    return processor.process_inputs(request_id, prompt, sp)


def test_the_request_passes_vllm_input_processing(vllm_mod, tiny_ckpt):
    """The kit's prompt + sampling params through V1's InputProcessor (what AsyncLLM.add_request runs),
    with a VllmConfig built by hand around vLLM's own ModelConfig from our engine args: the device
    part of create_engine_config cannot run without a GPU."""
    from vllm.config import CacheConfig, DeviceConfig, VllmConfig
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine import EngineCoreRequest

    wl = _workload(input_len=32, output_len=128)
    args = _args()
    ekw = vllm_args.engine_kwargs(tiny_ckpt, wl, args)
    ea = vllm_backend.make_engine_args(ekw)
    vc = VllmConfig(model_config=ea.create_model_config(), device_config=DeviceConfig(device="cuda"),
                    cache_config=CacheConfig(enable_prefix_caching=ea.enable_prefix_caching,
                                             gpu_memory_utilization=ea.gpu_memory_utilization))
    processor = _input_processor(vc)
    prompt = vllm_backend.make_prompt(list(range(wl.input_len)))
    # 0.12 takes the raw TokensPrompt; later versions an already-rendered TokensInput ("type": "token"),
    # which they pass on without the "Passing raw prompts to InputProcessor is deprecated" path.
    expected = {"prompt_token_ids": list(range(32))} if PINNED == STUDY else {"type": "token",
                                                                             "prompt_token_ids": list(range(32))}
    assert prompt == expected
    sp = vllm_backend.make_sampling_params(vllm_args.sampling_kwargs(wl, args))
    req = _process(processor, "kit-test-0", prompt, sp)
    assert isinstance(req, EngineCoreRequest)
    assert list(req.prompt_token_ids) == list(range(32))
    assert req.sampling_params.max_tokens == req.sampling_params.min_tokens == 128
    assert req.sampling_params.output_kind is RequestOutputKind.DELTA
    assert req.sampling_params.stop_token_ids == []  # only max_tokens ends the request
    # max_model_len = input + output exactly: a longer prompt is refused by vLLM itself.
    with pytest.raises(ValueError, match="maximum model length"):
        _process(processor, "kit-test-1", vllm_backend.make_prompt(list(range(161))), sp)

    # The settings reader understands the real config objects (names, enums).
    resolved = vllm_backend.resolved_settings(vc)
    assert resolved["quantization"] == "awq" and resolved["dtype"] == "float16"
    assert resolved["max_model_len"] == 160 and resolved["enable_prefix_caching"] is False
    assert resolved["enforce_eager"] is False and resolved["skip_tokenizer_init"] is True
    top = [name for _, key, names in vllm_backend.RESOLVED_FIELDS if key is None for name in names]
    assert list(resolved) == top + ["compilation"]  # every named field, read, in the order named
    assert set(resolved["compilation"]) == {"mode", "cudagraph_mode", "cudagraph_capture_sizes",
                                            "max_cudagraph_capture_size", "backend"}
    json.dumps(resolved)


def test_every_setting_the_report_names_is_a_field_of_this_vllms_config(vllm_mod):
    """settings.resolved reads only declared dataclass fields: a field renamed or removed by a vLLM version would
    silently vanish from the results, so both pinned versions must declare every one."""
    import dataclasses

    import vllm.config

    sections = {f.name for f in dataclasses.fields(vllm.config.VllmConfig)}
    for section, _key, names in vllm_backend.RESOLVED_FIELDS:
        assert section in sections, section
        declared = {f.name for f in dataclasses.fields(getattr(vllm.config, _CONFIG_CLASSES[section]))}
        assert set(names) <= declared, (section, sorted(set(names) - declared))


_CONFIG_CLASSES = {"model_config": "ModelConfig", "cache_config": "CacheConfig",
                   "scheduler_config": "SchedulerConfig", "compilation_config": "CompilationConfig"}


def test_compilation_settings_read_a_real_compilation_config(vllm_mod):
    from vllm.config import CompilationConfig
    from vllm.config.compilation import CompilationMode, CUDAGraphMode

    cc = CompilationConfig(mode=CompilationMode.VLLM_COMPILE, cudagraph_mode=CUDAGraphMode.FULL_AND_PIECEWISE,
                           cudagraph_capture_sizes=[1, 2, 4, 8])
    got = vllm_backend.config_fields(cc, vllm_backend.RESOLVED_FIELDS[-1][2])
    assert got["mode"] == "VLLM_COMPILE"  # the IntEnum's name, not 3
    assert got["cudagraph_mode"] == "FULL_AND_PIECEWISE"
    assert got["cudagraph_capture_sizes"] == [1, 2, 4, 8]
    json.dumps(got)


def test_async_llm_surface_the_backend_uses(vllm_mod):
    from vllm.engine.async_llm_engine import AsyncLLMEngine
    from vllm.v1.engine.async_llm import AsyncLLM

    assert AsyncLLMEngine is AsyncLLM
    params = inspect.signature(AsyncLLM.generate).parameters
    assert list(params)[:4] == ["self", "prompt", "sampling_params", "request_id"]
    assert inspect.isasyncgenfunction(AsyncLLM.generate)
    assert inspect.iscoroutinefunction(AsyncLLM.abort)
    assert callable(AsyncLLM.shutdown) and not inspect.iscoroutinefunction(AsyncLLM.shutdown)
    assert "engine_args" in inspect.signature(AsyncLLM.from_engine_args).parameters


def test_request_output_metrics_fields(vllm_mod):
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.v1.metrics.stats import RequestStateStats

    names = {f.name for f in dataclasses.fields(RequestStateStats)}
    assert set(vllm_backend.ENGINE_FIELDS) <= names
    assert "metrics" in inspect.signature(RequestOutput.__init__).parameters
    assert {"token_ids", "finish_reason"} <= {f.name for f in dataclasses.fields(CompletionOutput)}
    # A real RequestStateStats goes through the snapshot as raw, typed data; the intervals are derived on read.
    stats = RequestStateStats(num_generation_tokens=4, arrival_time=1.7e9, queued_ts=10.0, scheduled_ts=10.001,
                              first_token_ts=10.031, last_token_ts=10.046)
    stats.first_token_latency = 0.032
    snap = vllm_backend.engine_snapshot(stats)
    assert snap.first_token_latency == 0.032 and snap.num_generation_tokens == 4
    assert engine_samples.queued_to_first_token_ms(snap) == pytest.approx(31.0)
    assert engine_samples.engine_tpot_ms(snap) == pytest.approx(5.0)
    assert set(json.loads(snap.model_dump_json())) == set(vllm_backend.ENGINE_FIELDS)
