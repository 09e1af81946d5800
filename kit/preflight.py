"""Preflight: what the Docker runner needs, checked before any long step, one paragraph per problem: a
BuildKit-capable docker client and its daemon (kit/docker_client.py); for GPU steps the NVIDIA runtime, a GPU, and
that the GPU the step will run on meets the vLLM kernel's minimum compute capability (core/rules.py). Host side.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional

from core.errors import KitError, one_line
from core.rules import STUDY_SERIES, check_capability, names_gpu, visible_entry
from core.workload import WorkloadSpec
from kit.docker_client import DockerClient, PreflightError, probe

# The daemon's own words when `docker run --gpus all` finds no NVIDIA runtime (exit code 125).
NVIDIA_DAEMON_MESSAGE = 'could not select device driver "" with capabilities: [[gpu]]'


def nvidia_runtime_paragraph(detail: str = "") -> str:
    return (
        "No NVIDIA runtime in Docker: this step needs the GPU, but the Docker daemon cannot give containers GPUs "
        f"(`docker run --gpus all` fails with `{NVIDIA_DAEMON_MESSAGE}`, exit code 125). Install the NVIDIA "
        "Container Toolkit (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/), run `sudo "
        "nvidia-ctk runtime configure --runtime=docker` and restart dockerd; `docker info` should then list an "
        "`nvidia` runtime. Without a GPU, CPU runs use `--device cpu`; the GPU rows need a GPU host."
        + (f" ({detail})" if detail else "")
    )


def check_nvidia_runtime(client: DockerClient) -> None:
    """The daemon must be able to hand out GPUs. `--gpus` works through the `nvidia` runtime or, on newer
    toolkits, through nvidia-container-runtime-hook on the daemon's PATH; neither present means no GPUs."""
    r = client.run("info", "--format", "{{json .Runtimes}}")
    try:
        runtimes = (json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else None) or {}
    except json.JSONDecodeError:
        runtimes = {}
    if (any("nvidia" in name.lower() for name in runtimes) or shutil.which("nvidia-container-runtime-hook")
            or shutil.which("nvidia-container-toolkit")):
        return
    listed = ", ".join(sorted(runtimes)) or "none reported"
    raise PreflightError(nvidia_runtime_paragraph(f"`docker info` runtimes: {listed}"))


@dataclass
class GpuInfo:
    index: int
    name: str
    capability: Optional[tuple[int, int]]  # (major, minor); None when nvidia-smi does not say
    uuid: str = ""


def visible_gpus() -> list[GpuInfo]:
    """GPUs that nvidia-smi reports on the host; PreflightError when there are none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        raise PreflightError(
            "No GPU visible: nvidia-smi is not on PATH, so this host shows no NVIDIA GPU or driver. The GPU rows need "
            "an NVIDIA GPU with its driver installed (check with `nvidia-smi`); for a CPU-only check of the pipeline "
            "use `--device cpu` or `nox -s demo`."
        )
    r = (probe(smi, "--query-gpu=index,name,compute_cap,uuid", "--format=csv,noheader")
         or subprocess.CompletedProcess([smi], 1, "", "nvidia-smi timed out or could not run"))
    gpus = []
    for line in r.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0].isdigit():
            cap = re.fullmatch(r"(\d+)\.(\d+)", parts[2])  # "[N/A]" on old drivers
            gpus.append(GpuInfo(int(parts[0]), parts[1], (int(cap[1]), int(cap[2])) if cap else None,
                                parts[3] if len(parts) > 3 else ""))
    if r.returncode != 0 or not gpus:
        raise PreflightError(
            "No GPU visible: nvidia-smi found no usable GPU"
            f" ({one_line(r.stderr or r.stdout)}). Check the driver with `nvidia-smi` (a driver/"
            "library version mismatch needs a reboot); inside a VM or container the GPU must be passed through."
        )
    return gpus


def gpu_that_will_run(gpus: list[GpuInfo], cuda_visible_devices: Optional[str]) -> GpuInfo:
    """The GPU a step's cuda:0 is: the first entry of CUDA_VISIBLE_DEVICES (an nvidia-smi index or a UUID; the
    runner sets CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA numbers GPUs as nvidia-smi does), else GPU 0."""
    entry = visible_entry(cuda_visible_devices)
    if entry is None:
        return gpus[0]
    for gpu in gpus:
        if names_gpu(entry, gpu.index, gpu.uuid):
            return gpu
    listed = ", ".join(f"{g.index} ({g.name}, {g.uuid or 'no uuid'})" for g in gpus)
    raise PreflightError(
        f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r} names no GPU that nvidia-smi lists ({listed}), so the step "
        "would see no GPU. Set it to one of those indexes or UUIDs, or unset it to use GPU 0."
    )


def check_quantization_capability(workload: WorkloadSpec, gpu: GpuInfo, series: Optional[str] = None) -> None:
    """The vLLM rule and message (core.rules.check_capability) for the GPU that will run, before any build; series:
    the vLLM series of the step's stack ("0.12", "0.20"), whose kernels have their own minimums."""
    if workload.quantization is None or gpu.capability is None:
        return  # not a vLLM row; an unknown capability is checked in the run, where torch reads it
    try:
        check_capability(workload.quantization, gpu.capability, f"GPU {gpu.index} ({gpu.name})",
                         series or STUDY_SERIES)
    except KitError as e:
        raise PreflightError(str(e)) from None


def check_gpu_step(client: DockerClient, workload: WorkloadSpec, series: Optional[str] = None) -> None:
    """Everything a GPU step needs, all problems reported at once."""
    problems = []
    for check in (lambda: check_nvidia_runtime(client), lambda: check_quantization_capability(
            workload, gpu_that_will_run(visible_gpus(), os.environ.get("CUDA_VISIBLE_DEVICES")), series)):
        try:
            check()
        except PreflightError as e:
            problems.append(str(e))
    if problems:
        raise PreflightError("\n\n".join(problems))
