"""Preflight: what the Docker runner needs, checked before any long step, one paragraph per problem: a
BuildKit-capable docker client and its daemon; for GPU steps the NVIDIA runtime, a GPU, and that the GPU the step will
run on meets the vLLM kernel's minimum compute capability (core/rules.py); for a build, free disk under the docker root.
Also the docker CLI's image queries (id, size) that kit/images.py uses. Host side; no torch.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core.errors import KitError, one_line
from core.rules import STUDY_SERIES, check_capability, names_gpu, visible_entry
from core.workload import WorkloadSpec

FALLBACK_CLIENTS = ("/usr/bin/docker", "/usr/local/bin/docker", "/snap/bin/docker")
PROBE_TIMEOUT = 30


class PreflightError(KitError):
    """One or more preflight problems; the message holds one paragraph for each."""


@dataclass(frozen=True)
class DockerClient:
    path: str
    version: str
    buildkit: str  # "builtin" (client < 23) or "buildx" (plugin present)

    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_BUILDKIT="1")

    def run(self, *args: str, timeout: float = PROBE_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([self.path, *args], capture_output=True, text=True, env=self.env(), timeout=timeout)


def _probe(path: str, *args: str) -> Optional[subprocess.CompletedProcess]:
    try:
        return subprocess.run([path, *args], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _client_version(path: str) -> Optional[str]:
    r = _probe(path, "--version")
    m = re.search(r"version (\d+\.\d+\.\d+\S*?)[,\s]", r.stdout + " ") if r else None
    return m.group(1) if r and r.returncode == 0 and m else None


def buildkit_support(path: str, version: str) -> Optional[str]:
    """'buildx' if the buildx plugin answers, 'builtin' for clients < 23 (BuildKit built in), else None."""
    r = _probe(path, "buildx", "version")
    if r is not None and r.returncode == 0:
        return "buildx"
    major = version.split(".")[0]
    return "builtin" if major.isdigit() and int(major) < 23 else None


def find_docker() -> DockerClient:
    """The BuildKit-capable docker client to use for builds and runs.

    KIT_DOCKER wins (and must work); otherwise the first `docker` on PATH that can build with BuildKit,
    then the usual install locations (Debian's docker.io client at /usr/bin/docker has BuildKit built in).
    """
    forced = os.environ.get("KIT_DOCKER")
    if forced:
        path = forced if os.sep in forced else (shutil.which(forced) or forced)
        if not _client_version(path):
            raise PreflightError(
                f"No docker CLI: KIT_DOCKER={forced!r} is not a working docker client (`{path} --version` failed). "
                "Point KIT_DOCKER at a docker client, or unset it to let the kit search PATH."
            )
        return _first_buildkit_client((path,))
    on_path = [os.path.join(d, "docker") for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    found: dict[str, str] = {}  # real path -> the first name that leads to it
    for c in on_path + list(FALLBACK_CLIENTS):
        if os.path.isfile(c) and os.access(c, os.X_OK):
            found.setdefault(os.path.realpath(c), c)
    if not found:
        raise PreflightError(
            "No docker CLI: `docker` is not on PATH (nor in /usr/bin or /usr/local/bin). The default runner builds "
            "and runs the pinned images with Docker: install Docker Engine (https://docs.docker.com/engine/install/, "
            "or `apt-get install docker.io` on Debian/Ubuntu) and the NVIDIA Container Toolkit for GPUs, or run "
            "without Docker using `--runner local` in an environment made from the stack's lock (README, Colab path)."
        )
    return _first_buildkit_client(tuple(found.values()))


@functools.lru_cache(maxsize=8)
def _first_buildkit_client(candidates: tuple[str, ...]) -> DockerClient:
    tried = []
    for path in candidates:
        version = _client_version(path)
        if not version:
            continue
        kind = buildkit_support(path, version)
        if kind:
            return DockerClient(path, version, kind)
        tried.append((path, version))
    if not tried:
        raise PreflightError(
            f"No docker CLI: found {', '.join(candidates)} but none answers `docker --version`. Reinstall Docker, "
            "or set KIT_DOCKER to a working client."
        )
    listed = ", ".join(f"{p} ({v})" for p, v in tried)
    raise PreflightError(
        f"No BuildKit-capable docker client: {listed} cannot build with BuildKit. The images use BuildKit cache "
        "mounts and a BuildKit secret for the CA bundle, and Docker clients from version 23 on need the buildx "
        "plugin for that (`docker buildx version` fails here). Install the buildx plugin (package docker-buildx-plugin "
        "or docker-buildx), or point KIT_DOCKER at a client with BuildKit built in, such as Debian's docker.io "
        "client (/usr/bin/docker, version 20.10)."
    )


def check_daemon(client: DockerClient) -> str:
    """The daemon's version; PreflightError when it cannot be reached."""
    try:
        r = client.run("version", "--format", "{{.Server.Version}}")
    except subprocess.TimeoutExpired:
        raise PreflightError(
            f"The Docker daemon did not answer within {PROBE_TIMEOUT}s (`{client.path} version`). Check that dockerd "
            "is healthy (`systemctl status docker`, or its log), then try again."
        )
    if r.returncode == 0 and r.stdout.strip():
        return r.stdout.strip()
    err = (r.stderr or r.stdout).strip()
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if "permission denied" in err.lower():
        raise PreflightError(
            f"Docker daemon permission denied: this user (uid {os.getuid()}) may not use the Docker socket ({host}). "
            "Add the user to the `docker` group (`sudo usermod -aG docker $USER`, then log in again or run `newgrp "
            "docker`), or use rootless Docker; running the kit with sudo also works but writes root-owned caches. "
            f"Docker said: {one_line(err)}"
        )
    raise PreflightError(
        f"Docker daemon unreachable at {host}: the docker client works but no daemon answers. Start it "
        "(`sudo systemctl start docker`, or `sudo dockerd &` where there is no systemd) or fix DOCKER_HOST / the "
        f"docker context, then check with `docker info`. Docker said: {one_line(err)}"
    )


def _inspect(docker: DockerClient, ref: str, template: str) -> str:
    r = docker.run("image", "inspect", "--format", template, ref, timeout=None)
    return r.stdout.strip() if r.returncode == 0 else ""


def inspect_image_id(docker: DockerClient, ref: str) -> Optional[str]:
    return _inspect(docker, ref, "{{.Id}}") or None


def image_size_bytes(docker: DockerClient, ref: str) -> Optional[int]:
    size = _inspect(docker, ref, "{{.Size}}")
    return int(size) if size.isdigit() else None


def check_disk(client: DockerClient, need_gb: float, what: str) -> None:
    """Enough free space under the docker root (or / when the daemon's root is not visible from here)."""
    need_gb = float(os.environ.get("KIT_MIN_FREE_GB") or need_gb)
    r = client.run("info", "--format", "{{.DockerRootDir}}")
    root = Path(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None
    where = root if root and root.exists() else Path("/")
    try:
        free = shutil.disk_usage(where).free / 1e9
    except OSError:
        return
    if free >= need_gb:
        return
    raise PreflightError(
        f"Not enough free disk for {what}: {free:.1f} GB free under {where}, about {need_gb:.0f} GB needed (the "
        "image plus BuildKit's download cache). Free space, e.g. `docker builder prune` (the build cache) and "
        "`docker image prune` (old awq-kit-* images), or move the docker root to a larger disk; KIT_MIN_FREE_GB "
        "overrides the threshold."
    )


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
    r = (_probe(smi, "--query-gpu=index,name,compute_cap,uuid", "--format=csv,noheader")
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
