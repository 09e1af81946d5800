"""The Docker runner's argv and the preflight's GPU logic, without a daemon (tests/docker has the real thing)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kit import KIT_ROOT, docker_client, preflight  # noqa: E402
from kit.runners import RunnerOptions, Step  # noqa: E402
from core.workload import WorkloadSpec  # noqa: E402
from kit.runners import docker  # noqa: E402
from kit.runners.docker import container_env, docker_run_command, map_host_paths  # noqa: E402

IMAGE_ENV = {"KIT_IMAGE_ID": "sha256:" + "a" * 64, "KIT_IMAGE_TAG": "awq-kit-hf:0123456789abcdef",
             "KIT_LOCK_HASH": "b" * 64}


def _cmd(tmp_path, stack="hf", workload=WorkloadSpec(), ca=None, **env):
    opts = RunnerOptions(results_dir=tmp_path / "results", output_dir=tmp_path / "output",
                         cache_dir=tmp_path / "cache", hf_home=tmp_path / "hf", ca_bundle=ca)
    step = Step(stack, ("-m", "bench", "run"), workload)
    return docker_run_command("docker", step, opts, "awq-kit-hf:0123456789abcdef",
                              container_env(opts, IMAGE_ENV, stack), name="n")


def test_run_argv(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    cmd = _cmd(tmp_path)
    joined = " ".join(cmd)
    assert cmd[:4] == ["docker", "run", "--rm", "--init"]
    assert f"--user {os.getuid()}:{os.getgid()}" in joined and "-e HOME=/tmp" in joined and "-e USER=" in joined
    assert "--gpus all --shm-size 8g" in joined
    assert f"type=bind,source={KIT_ROOT},target=/kit,readonly" in joined
    assert f"source={tmp_path / 'results'},target=/results" in joined and "target=/hf-cache" in joined
    assert "hf_secret_value_123" not in joined
    assert cmd[cmd.index("HF_TOKEN") - 1] == "-e", "HF_TOKEN goes by name only"
    for key, value in IMAGE_ENV.items():
        assert f"{key}={value}" in cmd
    assert "KIT_RESULTS_DIR=/results" in cmd and "KIT_RUNNER=docker" in cmd and "HF_HOME=/hf-cache" in cmd
    assert cmd[-6:-2] == ["python", "-m", "bench", "run"] and cmd[-7] == "awq-kit-hf:0123456789abcdef"
    assert cmd[-2] == "--workload" and WorkloadSpec.from_json(cmd[-1]) == WorkloadSpec()


def test_no_token_no_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    assert "HF_TOKEN" not in " ".join(_cmd(tmp_path))


def test_token_in_extra_env_is_not_spelled_out(tmp_path, monkeypatch):
    """Even a token that slipped into extra_env is never written as KEY=value."""
    opts = RunnerOptions(extra_env={"HF_TOKEN": "hf_leak"})
    assert "HF_TOKEN" not in container_env(opts, IMAGE_ENV, "hf")


def test_cpu_steps_and_vllm_mounts(tmp_path):
    cpu = _cmd(tmp_path, workload=WorkloadSpec(device="cpu"))
    assert "--gpus" not in cpu
    assert "--gpus" not in _cmd(tmp_path, workload=None)  # a plain command (a test suite in the image)
    v = " ".join(_cmd(tmp_path, stack="vllm"))
    assert "target=/vllm-cache" in v and "VLLM_CACHE_ROOT=/vllm-cache" in v


def test_ca_bundle_is_mounted_read_only_at_run_time(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cmd = " ".join(_cmd(tmp_path, ca=ca))
    assert f"source={ca},target=/run/kit/ca-bundle.pem,readonly" in cmd
    assert "SSL_CERT_FILE=/run/kit/ca-bundle.pem" in cmd and "REQUESTS_CA_BUNDLE=/run/kit/ca-bundle.pem" in cmd


def _fake_smi(tmp_path, monkeypatch, csv: str, rc: int = 0):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir(exist_ok=True)
    smi.write_text(f"#!/bin/sh\nprintf '{csv}'\nexit {rc}\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")


def test_awq_marlin_on_a_t4(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, "0, Tesla T4, 7.5, GPU-aaaa\\n")
    gpus = preflight.visible_gpus()
    assert gpus[0].capability == (7, 5) and gpus[0].uuid == "GPU-aaaa"
    with pytest.raises(preflight.PreflightError, match=r"awq_marlin kernel needs compute capability >= 8.0.*Tesla T4.*7.5"):
        preflight.check_quantization_capability(WorkloadSpec(quantization="awq_marlin"), gpus[0])
    preflight.check_quantization_capability(WorkloadSpec(quantization="awq"), gpus[0])  # awq is fine on 7.5
    preflight.check_quantization_capability(WorkloadSpec(quantization="awq_marlin"),
                                            preflight.GpuInfo(0, "NVIDIA A100-SXM4-80GB", (8, 0)))


def test_preflight_applies_the_rule_of_the_steps_vllm_series():
    t4 = preflight.GpuInfo(0, "Tesla T4", (7, 5))
    with pytest.raises(preflight.PreflightError, match="8.0"):
        preflight.check_quantization_capability(WorkloadSpec(quantization="awq_marlin"), t4, "0.12")
    preflight.check_quantization_capability(WorkloadSpec(quantization="awq_marlin"), t4, "0.20")  # 0.20's marlin: >= 7.5
    from kit.images import vllm_series_of

    assert vllm_series_of("vllm") == "0.12" and vllm_series_of("vllm-0.20") == "0.20" and vllm_series_of("hf") is None


def test_preflight_applies_the_benchs_rule_and_message(tmp_path, monkeypatch):
    """One rule: awq on a V100 (7.0) is refused up front, as the bench itself would refuse it after the build."""
    from core.errors import BenchError
    from core.rules import check_capability

    v100 = preflight.GpuInfo(0, "Tesla V100-SXM2-16GB", (7, 0))
    with pytest.raises(preflight.PreflightError) as kit_side:
        preflight.check_quantization_capability(WorkloadSpec(quantization="awq"), v100)
    with pytest.raises(BenchError) as bench_side:
        check_capability("awq", (7, 0), "GPU 0 (Tesla V100-SXM2-16GB)")
    assert str(kit_side.value) == str(bench_side.value)


@pytest.mark.parametrize("visible,checked", [(None, "A100"), ("1", "T4"), ("GPU-bbbb", "T4"), ("0,1", "A100")])
def test_preflight_checks_the_gpu_that_will_run(tmp_path, monkeypatch, visible, checked):
    _fake_smi(tmp_path, monkeypatch, "0, NVIDIA A100-SXM4-80GB, 8.0, GPU-aaaa\\n1, Tesla T4, 7.5, GPU-bbbb\\n")
    gpu = preflight.gpu_that_will_run(preflight.visible_gpus(), visible)
    assert checked in gpu.name
    if checked == "T4":
        with pytest.raises(preflight.PreflightError, match=r"GPU 1 \(Tesla T4\) is 7.5"):
            preflight.check_quantization_capability(WorkloadSpec(quantization="awq_marlin"), gpu)
    else:
        preflight.check_quantization_capability(WorkloadSpec(quantization="awq_marlin"), gpu)


def test_cuda_visible_devices_naming_no_gpu(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, "0, Tesla T4, 7.5, GPU-aaaa\\n")
    with pytest.raises(preflight.PreflightError, match=r"CUDA_VISIBLE_DEVICES='3' names no GPU.*0 \(Tesla T4"):
        preflight.gpu_that_will_run(preflight.visible_gpus(), "3")


def test_container_numbers_gpus_as_nvidia_smi_does(tmp_path):
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in _cmd(tmp_path)


def test_no_gpu_visible(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver\\n", 9)
    with pytest.raises(preflight.PreflightError, match="No GPU visible: nvidia-smi found no usable GPU"):
        preflight.visible_gpus()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(preflight.PreflightError, match="nvidia-smi is not on PATH"):
        preflight.visible_gpus()


def test_buildkit_support_by_client_version(tmp_path):
    stub = tmp_path / "docker"
    stub.write_text("#!/bin/sh\nexit 1\n")  # no buildx plugin
    stub.chmod(0o755)
    assert docker_client.buildkit_support(str(stub), "20.10.24+dfsg1") == "builtin"
    assert docker_client.buildkit_support(str(stub), "28.2.2") is None
    plugin = tmp_path / "docker2"
    plugin.write_text('#!/bin/sh\n[ "$1" = buildx ] && echo "github.com/docker/buildx v0.17.1" && exit 0\nexit 1\n')
    plugin.chmod(0o755)
    assert docker_client.buildkit_support(str(plugin), "28.2.2") == "buildx"


def test_host_model_paths_are_mounted(tmp_path):
    model = tmp_path / "Qwen3-8B-AWQ"
    model.mkdir()
    spec, mounts = map_host_paths(WorkloadSpec(model=str(model), synthetic="tiny"))
    assert (spec.model, spec.synthetic) == ("/models/0/Qwen3-8B-AWQ", "tiny")
    assert mounts == [(model.resolve(), "/models/0/Qwen3-8B-AWQ")]
    inside = KIT_ROOT / "bench" / "configs" / "tiny.json"
    spec, mounts = map_host_paths(WorkloadSpec(synthetic=str(inside), model="Qwen/Qwen3-8B-AWQ"))
    assert (spec.synthetic, spec.model) == ("/kit/bench/configs/tiny.json", "Qwen/Qwen3-8B-AWQ") and not mounts
    cmd = " ".join(_cmd(tmp_path, workload=WorkloadSpec(model=str(model))))
    assert f"source={model.resolve()},target=/models/0/Qwen3-8B-AWQ,readonly" in cmd


def test_docker_preflight_checks_the_gpu_and_the_disk_only_where_needed(monkeypatch):
    """One sequence for the runner and the test suites: GPU only for a GPU step (with its vLLM series), disk only
    for an image that is not built yet."""
    calls = []
    client = object()
    monkeypatch.setattr(docker_client, "find_docker", lambda: client)
    monkeypatch.setattr(docker_client, "check_daemon", lambda c: calls.append(("daemon", c)))
    monkeypatch.setattr(preflight, "check_gpu_step", lambda c, w, series: calls.append(("gpu", w.quantization, series)))
    monkeypatch.setattr(docker_client, "check_disk", lambda c, gb, what: calls.append(("disk", what)))
    monkeypatch.setattr(docker, "current_tag", lambda stack, c: f"awq-kit-{stack}:tag")
    monkeypatch.setattr(docker_client, "inspect_image_id", lambda c, tag: "sha256:1" if "hf" in tag else None)
    assert docker.docker_preflight(("hf", "vllm"), gpu_workload=WorkloadSpec(quantization="awq"),
                                      vllm_series="0.20") is client
    assert calls == [("daemon", client), ("gpu", "awq", "0.20"),
                     ("disk", "building the vllm image")]
    calls.clear()
    docker.docker_preflight()
    assert calls == [("daemon", client)]
