"""Provenance of a run, read inside the environment that ran it: `collect_provenance(stack, device)`.

The stack's pins come from its lock (KIT_STACK, set by the runners, wins over the caller's default; core/locks.py);
the runner's contract from the KIT_* variables (kit/runners/__init__.py). torch is imported only for a "cuda" device.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
from pathlib import Path
from typing import Optional

from bench.conditions import nvml_text, nvml_handle, nvml_session
from core.git import kit_git_state
from core.locks import lock_path, lock_versions
from core.results import GPU, HostRecord, Provenance, SlurmJob

LIBRARIES = ("torch", "transformers", "autoawq", "autoawq-kernels", "triton", "vllm", "tokenizers", "safetensors",
             "huggingface-hub", "accelerate", "numpy", "flashinfer-python", "xformers", "nvidia-ml-py")

KIT_ROOT = Path(__file__).resolve().parent.parent


def installed_version(name: str) -> Optional[str]:
    """A distribution's version from its metadata (nothing imported); None if not installed."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def library_versions(names=LIBRARIES) -> dict[str, Optional[str]]:
    return {name: installed_version(name) for name in names}


def stack_pins(stack: str, root: Optional[Path] = None) -> tuple[dict[str, str], str]:
    """(pins, where they come from): the stack's whole lock; none for a stack without one."""
    root = root or KIT_ROOT
    locked, where = lock_versions(stack, root), lock_path(stack, root).relative_to(root)
    return (locked, str(where)) if locked else ({}, f"nothing pinned: no {where}")


def deviations(pins: dict[str, str], installed: dict[str, Optional[str]], python: str) -> list[str]:
    """Every pin that the environment does not meet, in pin order: python by prefix, packages exactly."""
    out = []
    for name, want in pins.items():
        if name == "python":
            if ".".join(python.split(".")[: len(want.split("."))]) != want:
                out.append(f"python {python} (pinned {want})")
            continue
        have = installed.get(name)
        if have is None:
            out.append(f"{name} not installed (pinned {want})")
        elif have != want:
            out.append(f"{name} {have} (pinned {want})")
    return out


def gpu_info(device_index: int = 0) -> Optional[GPU]:
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(device_index)
    name, mem_mib, driver, uuid = props.name, int(props.total_memory // 2**20), None, None
    try:
        with nvml_session() as nvml:
            h = nvml_handle(nvml, device_index)
            name = nvml_text(nvml.nvmlDeviceGetName(h))
            mem_mib = int(nvml.nvmlDeviceGetMemoryInfo(h).total // 2**20)
            driver = nvml_text(nvml.nvmlSystemGetDriverVersion())
            uuid = nvml_text(nvml.nvmlDeviceGetUUID(h))
    except Exception:  # not installed, or no NVML in this container: torch's view is enough
        pass
    return GPU(name=name, memory_total_mib=mem_mib, driver=driver, cuda_runtime=torch.version.cuda,
               compute_capability=f"{props.major}.{props.minor}", uuid=uuid)


def cpu_model(cpuinfo_text: str) -> Optional[str]:
    """The first 'model name' of /proc/cpuinfo's text (x86; most ARM kernels print none): None when absent."""
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return " ".join(value.split())
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or /proc not mounted: the field stays None
        return ""


def host_record(cpuinfo: Path = Path("/proc/cpuinfo"), boot_id: Path = Path("/proc/sys/kernel/random/boot_id")
                ) -> HostRecord:
    """The measuring machine: at batch 1 its CPU moves the launch-bound rows as much as the GPU does."""
    return HostRecord(cpu_model=cpu_model(_read_text(cpuinfo)), cpu_cores=os.cpu_count(),
                      hostname=platform.node() or None, boot_id=_read_text(boot_id).strip() or None)


def slurm_job(env=None) -> Optional[SlurmJob]:
    """The Slurm job this runs in, from the variables Slurm (and the kit's job script) set; None outside one."""
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return None
    return SlurmJob(job_id=job_id, node=env.get("SLURMD_NODENAME") or None,
                    partition=env.get("SLURM_JOB_PARTITION") or None, gpu_type=env.get("KIT_SLURM_GPU_TYPE") or None)


def collect_provenance(stack: str, device: str) -> Provenance:
    """stack: the caller's default ("hf" | "vllm"), KIT_STACK wins; device: "cuda..." | "cpu"."""
    stack = os.environ.get("KIT_STACK") or stack
    libs = library_versions()
    python = platform.python_version()
    pins, pins_source = stack_pins(stack)
    installed = library_versions([name for name in pins if name != "python"])
    commit, dirty = kit_git_state()  # a runner declares it; started by hand in a checkout, git says
    runner = os.environ.get("KIT_RUNNER", "local")
    return Provenance(
        kit_commit=commit, kit_dirty=dirty, runner=runner if runner in ("docker", "local") else "local",
        image_id=os.environ.get("KIT_IMAGE_ID"), image_tag=os.environ.get("KIT_IMAGE_TAG"),
        lock_hash=os.environ.get("KIT_LOCK_HASH"), python=python, platform=platform.platform(), libraries=libs,
        pins=pins, pins_source=pins_source, deviations=deviations(pins, installed, python),
        gpu=gpu_info() if device.startswith("cuda") else None, label=os.environ.get("KIT_LABEL"), slurm=slurm_job(),
        host=host_record(),
    )
