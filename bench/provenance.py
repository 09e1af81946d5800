"""Provenance of a run, read inside the environment that ran it.

`collect_provenance(stack, device)` -> kit.results.Provenance:
  - library versions via importlib.metadata (whatever of LIBRARIES is installed; None otherwise),
    Python and platform;
  - the GPU (name, memory, driver through nvidia-ml-py when importable, else torch; CUDA runtime
    from torch; compute capability) — None on a CPU run;
  - the stack's pins: every `name==version` line of images/<stack>/requirements.lock and the Python of its
    `# kit-lock:` header (PINS only for a stack without a lock), and `deviations`: every pinned package whose
    installed version differs, or that is not installed. The stack is KIT_STACK, which the runners set from
    their Step, else the caller's default: a new images/<stack>/ needs no code here;
  - the runner's environment contract (kit/runners/__init__.py): KIT_GIT_COMMIT/KIT_GIT_DIRTY,
    KIT_IMAGE_ID/KIT_IMAGE_TAG, KIT_LOCK_HASH, KIT_RUNNER, KIT_LABEL, KIT_STACK.

Only torch is imported (for the GPU), and only when device is "cuda".
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
from pathlib import Path
from typing import Optional

from kit.results import GPU, Provenance

LIBRARIES = ("torch", "transformers", "autoawq", "autoawq-kernels", "triton", "vllm", "tokenizers", "safetensors",
             "huggingface-hub", "accelerate", "numpy", "flashinfer-python", "xformers", "nvidia-ml-py")

# The headline versions, for a stack whose lock the kit does not carry (every stack in images/ has one).
PINS: dict[str, dict[str, str]] = {
    "hf": {"python": "3.12", "torch": "2.9.1", "transformers": "4.51.3", "autoawq": "0.2.9"},
    "vllm": {"python": "3.12", "torch": "2.9.0", "vllm": "0.12.0"},
    "vllm-0.20": {"python": "3.12", "torch": "2.11.0", "vllm": "0.20.0"},
}
KIT_ROOT = Path(__file__).resolve().parent.parent
_LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_LOCK_PYTHON = re.compile(r"^# kit-lock:.*\bpython=(\S+)", re.M)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def library_versions(names=LIBRARIES) -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def lock_path(stack: str, root: Optional[Path] = None) -> Path:
    return (root or KIT_ROOT) / "images" / stack / "requirements.lock"


def lock_versions(stack: str, root: Optional[Path] = None) -> dict[str, str]:
    """name -> version of every `name==version` line of images/<stack>/requirements.lock (empty when absent),
    plus "python" from its `# kit-lock: ... python=X.Y` header when it has one."""
    try:
        text = lock_path(stack, root).read_text(encoding="utf-8")
    except OSError:
        return {}
    found = {}
    header = _LOCK_PYTHON.search(text)
    if header:
        found["python"] = header.group(1)
    for line in text.splitlines():
        m = _LOCK_LINE.match(line.strip())
        if m:
            found[_norm(m.group(1))] = m.group(2)
    return found


def stack_pins(stack: str, root: Optional[Path] = None) -> tuple[dict[str, str], str]:
    """(pins, where they come from): the whole lock when the kit carries one, else PINS."""
    locked = lock_versions(stack, root)
    if locked:
        path = lock_path(stack, root)
        return locked, str(path.relative_to(root or KIT_ROOT))
    return dict(PINS.get(stack, {})), f"kit defaults (no images/{stack}/requirements.lock)"


def deviations(pins: dict[str, str], installed: dict[str, Optional[str]], python: str) -> list[str]:
    """Every pin that the environment does not meet, in pin order: python by prefix, packages exactly."""
    out = []
    for name, want in pins.items():
        if name == "python":
            have = python
            if ".".join(have.split(".")[: len(want.split("."))]) != want:
                out.append(f"python {have} (pinned {want})")
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
    name, mem_mib, driver = props.name, int(props.total_memory // 2**20), None
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            n = pynvml.nvmlDeviceGetName(h)
            name = n.decode() if isinstance(n, bytes) else n
            mem_mib = int(pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20)
            d = pynvml.nvmlSystemGetDriverVersion()
            driver = d.decode() if isinstance(d, bytes) else d
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # not installed, or no NVML in this container: torch's view is enough
        pass
    return GPU(name=name, memory_total_mib=mem_mib, driver=driver, cuda_runtime=torch.version.cuda,
               compute_capability=f"{props.major}.{props.minor}")


def _env_bool(name: str) -> Optional[bool]:
    v = os.environ.get(name)
    if v is None:
        return None
    return v.strip().lower() in ("1", "true", "yes")


def collect_provenance(stack: str, device: str) -> Provenance:
    """stack: the caller's default ("hf" | "vllm"), KIT_STACK wins; device: "cuda..." | "cpu"."""
    stack = os.environ.get("KIT_STACK") or stack
    libs = library_versions()
    python = platform.python_version()
    pins, pins_source = stack_pins(stack)
    installed = library_versions([name for name in pins if name != "python"])
    commit = os.environ.get("KIT_GIT_COMMIT")
    dirty = _env_bool("KIT_GIT_DIRTY")
    if commit is None:  # started by hand in a checkout, not by a runner
        try:
            from kit.runners import git_state

            commit, dirty = git_state()
        except Exception:
            pass
    runner = os.environ.get("KIT_RUNNER", "local")
    return Provenance(
        kit_commit=commit,
        kit_dirty=dirty,
        runner=runner if runner in ("docker", "local") else "local",
        image_id=os.environ.get("KIT_IMAGE_ID"),
        image_tag=os.environ.get("KIT_IMAGE_TAG"),
        lock_hash=os.environ.get("KIT_LOCK_HASH"),
        python=python,
        platform=platform.platform(),
        libraries=libs,
        pins=pins,
        pins_source=pins_source,
        deviations=deviations(pins, installed, python),
        gpu=gpu_info() if device.startswith("cuda") else None,
        label=os.environ.get("KIT_LABEL"),
    )
