"""Talking to the docker CLI: finding a BuildKit-capable client, checking that its daemon answers, asking it about
images and its disk. kit/images.py (builds) and kit/preflight.py (the checks before a Docker step) both import it;
it imports neither. Host side; no torch.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core.errors import KitError, one_line

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


def probe(path: str, *args: str) -> Optional[subprocess.CompletedProcess]:
    try:
        return subprocess.run([path, *args], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _client_version(path: str) -> Optional[str]:
    r = probe(path, "--version")
    m = re.search(r"version (\d+\.\d+\.\d+\S*?)[,\s]", r.stdout + " ") if r else None
    return m.group(1) if r and r.returncode == 0 and m else None


def buildkit_support(path: str, version: str) -> Optional[str]:
    """'buildx' if the buildx plugin answers, 'builtin' for clients < 23 (BuildKit built in), else None."""
    r = probe(path, "buildx", "version")
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
