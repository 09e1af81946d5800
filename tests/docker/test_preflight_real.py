"""Preflight against the real Docker engine of this machine: each problem gets its one paragraph.

This CI machine really lacks the NVIDIA runtime, so the GPU checks are exercised for real: the kit's message,
the daemon's own message for `docker run --gpus all`, and `python -m kit bench-hf` failing fast (no build).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from core.workload import WorkloadSpec
from kit import docker_client, images, preflight
from dockerkit import CPU_BENCH, kit_dirs, run_kit


def _has_nvidia(client) -> bool:
    try:
        preflight.check_nvidia_runtime(client)
        return True
    except preflight.PreflightError:
        return False


def _no_traceback(r):
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, "a preflight failure must not be a stack trace"


def test_nvidia_runtime_check_against_the_real_daemon(docker_client):
    runtimes = json.loads(docker_client.run("info", "--format", "{{json .Runtimes}}").stdout or "null")
    assert runtimes, "`docker info --format {{json .Runtimes}}` returned nothing"
    if any("nvidia" in k for k in runtimes):
        preflight.check_nvidia_runtime(docker_client)  # a GPU host: the check must pass
        return
    with pytest.raises(preflight.PreflightError) as e:
        preflight.check_nvidia_runtime(docker_client)
    msg = str(e.value)
    assert msg.startswith("No NVIDIA runtime in Docker")
    assert preflight.NVIDIA_DAEMON_MESSAGE in msg and "NVIDIA Container Toolkit" in msg
    assert "nvidia-ctk runtime configure" in msg and "runc" in msg  # names what the daemon has
    assert "\n" not in msg, "one paragraph"


def test_daemon_says_what_preflight_quotes(docker_client, hf_image):
    """The message the kit quotes is the daemon's own (the runner recognises a failed run by it and exit code 125)."""
    r = subprocess.run([docker_client.path, "run", "--rm", "--gpus", "all", hf_image.tag, "true"],
                       capture_output=True, text=True, env=docker_client.env(), timeout=120)
    if _has_nvidia(docker_client):
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert preflight.NVIDIA_DAEMON_MESSAGE in r.stderr, r.stderr


def test_gpu_step_fails_fast_with_the_paragraph(docker_client, kit_env, tmp_path):
    """`python -m kit bench-hf` (GPU by default) on this machine: the preflight paragraph, exit 2, no build."""
    if _has_nvidia(docker_client):  # a GPU host (never this CI machine): the GPU preflight must pass instead
        preflight.check_gpu_step(docker_client, WorkloadSpec(quantization="awq"))
        return
    t0 = time.monotonic()
    r = run_kit(["bench-hf", "--runner", "docker", "--no-report", *kit_dirs(tmp_path), "--synthetic", "tiny",
                 "--warmup", "1", "--iters", "2", "--output-len", "4"], kit_env, timeout=300)
    assert r.returncode == 2
    assert "No NVIDIA runtime in Docker" in r.stderr and preflight.NVIDIA_DAEMON_MESSAGE in r.stderr
    _no_traceback(r)
    assert "[image hf] building" not in r.stdout, "preflight must come before any build"
    assert time.monotonic() - t0 < 120
    assert not list((tmp_path / "results").glob("*.json")) if (tmp_path / "results").exists() else True


def test_no_docker_cli(monkeypatch, tmp_path):
    monkeypatch.delenv("KIT_DOCKER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no docker anywhere on PATH
    monkeypatch.setattr(docker_client, "FALLBACK_CLIENTS", ())
    with pytest.raises(preflight.PreflightError) as e:
        docker_client.find_docker()
    assert str(e.value).startswith("No docker CLI") and "--runner local" in str(e.value)


def test_no_docker_cli_through_the_kit(kit_env, tmp_path):
    kit_env["KIT_DOCKER"] = str(tmp_path / "no-such-docker")
    r = run_kit(["bench-hf", "--runner", "docker", "--no-report", *kit_dirs(tmp_path), *CPU_BENCH], kit_env)
    assert r.returncode == 2 and "No docker CLI" in r.stderr and "KIT_DOCKER" in r.stderr
    _no_traceback(r)


def test_daemon_unreachable(kit_env, tmp_path, docker_client):
    kit_env["DOCKER_HOST"] = f"unix://{tmp_path}/no-daemon.sock"
    r = run_kit(["bench-hf", "--runner", "docker", "--no-report", *kit_dirs(tmp_path), *CPU_BENCH], kit_env)
    assert r.returncode == 2 and "Docker daemon unreachable" in r.stderr and "no-daemon.sock" in r.stderr
    _no_traceback(r)


def test_permission_denied(nonroot_python, kit_env, docker_client):
    """A uid outside the docker group gets the permission paragraph (real socket, real daemon)."""
    nr = nonroot_python
    kit_env["HOME"] = "/tmp"
    kit_env["PYTHONPATH"] = str(nr.kit)
    r = run_kit(["bench-hf", "--runner", "docker", "--no-report", "--results-dir", "/tmp/kit-nonroot-never",
                 *CPU_BENCH], kit_env, python=nr.python, cwd=nr.kit, user=nr.uid, group=nr.gid, extra_groups=[])
    assert r.returncode == 2, r.stderr
    assert "Docker daemon permission denied" in r.stderr and "docker` group" in r.stderr
    _no_traceback(r)


def _buildkitless_client(tmp_path: Path) -> str:
    """A docker client >= 23 without buildx: the real one if this machine has it, else a faithful stand-in."""
    for c in ("/usr/local/bin/docker", "/usr/bin/docker"):
        if os.path.exists(c):
            v = docker_client._client_version(c)
            if v and int(v.split(".")[0]) >= 23 and docker_client.buildkit_support(c, v) is None:
                return c
    stub = tmp_path / "docker"
    stub.write_text('#!/bin/sh\ncase "$1" in\n  --version) echo "Docker version 28.2.2, build e6534b4";;\n'
                    '  buildx) echo "docker: unknown command: docker buildx" >&2; exit 1;;\n'
                    '  *) exit 1;;\nesac\n')
    stub.chmod(0o755)
    return str(stub)


def test_no_buildkit_client(kit_env, tmp_path):
    client = _buildkitless_client(tmp_path)
    kit_env["KIT_DOCKER"] = client
    r = run_kit(["bench-hf", "--runner", "docker", "--no-report", *kit_dirs(tmp_path), *CPU_BENCH], kit_env)
    assert r.returncode == 2 and "No BuildKit-capable docker client" in r.stderr and client in r.stderr
    assert "buildx" in r.stderr and "/usr/bin/docker" in r.stderr
    _no_traceback(r)


def test_client_choice_prefers_buildkit(docker_client):
    """Whatever is first on PATH, the chosen client builds with BuildKit."""
    assert docker_client.buildkit in ("builtin", "buildx")
    assert docker_client.env()["DOCKER_BUILDKIT"] == "1"
    major = int(docker_client.version.split(".")[0])
    assert docker_client.buildkit == "buildx" or major < 23


def test_not_enough_disk_before_a_build(kit_env, tmp_path, docker_client):
    """A build that would not fit stops before it starts (threshold forced with KIT_MIN_FREE_GB)."""
    kit_env["KIT_BASE_IMAGE"] = (kit_env.get("KIT_BASE_IMAGE") or "ubuntu:24.04") + "-never-built"
    kit_env["KIT_MIN_FREE_GB"] = "1000000"
    r = run_kit(["bench-hf", "--runner", "docker", "--no-report", *kit_dirs(tmp_path), *CPU_BENCH], kit_env)
    assert r.returncode == 2 and "Not enough free disk for building the hf image" in r.stderr
    assert "docker builder prune" in r.stderr and "[image hf] building" not in r.stdout
    _no_traceback(r)


def test_missing_base_image_is_explained(kit_env, tmp_path, docker_client):
    """A base that cannot be pulled (no registry, or a typo) names KIT_BASE_IMAGE in its paragraph."""
    kit_env["KIT_BASE_IMAGE"] = "kit-base:does-not-exist"
    r = run_kit(["bench-hf", "--runner", "docker", "--no-report", *kit_dirs(tmp_path), *CPU_BENCH], kit_env,
                timeout=600)
    assert r.returncode == 2 and "building the hf image" in r.stderr and "failed" in r.stderr
    assert "KIT_BASE_IMAGE" in r.stderr
    _no_traceback(r)
    assert images.inspect_image_id(docker_client, images.image_tag("hf", "kit-base:does-not-exist")) is None
