"""Fixtures for tests that use the real Docker engine (and build/reuse the real images).

No mocks: the daemon, the images and the kit's own entry points (`python -m kit ...`) are the real ones.
Without a usable Docker these tests skip with the reason, except under CI=true, where they fail.

Base image: the kit uses KIT_BASE_IMAGE when set (CI: kit-base:bookworm, made with debootstrap). When it
is unset, the Dockerfile's digest-pinned ubuntu:24.04 is used if present locally; otherwise a local
`kit-base:bookworm` is used and the session header says so (no registry is reachable on such machines).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
for _p in (str(REPO), str(REPO / "tests" / "support"), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from kit import docker_client as kit_docker, images, preflight  # noqa: E402
from kit.runners.docker import sweep_stale_containers  # noqa: E402
from dockerkit import CI, LOCAL_BASE, NOTES, NonRoot, copy_kit, unavailable  # noqa: E402
# CI=true: any skip in this suite is a failure (tests/support/ci_policy.py).
from ci_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402,F401


@pytest.fixture(autouse=True)
def no_container_left_behind():
    """Teardown by label: whatever kit process a test started has ended by now, so a kit-labelled container it
    left would be stale; remove it (never one without the kit's labels, nor one of a kit process still alive)."""
    yield
    try:
        client = kit_docker.find_docker()
        kit_docker.check_daemon(client)
    except preflight.PreflightError:
        return
    for name in sweep_stale_containers(client):
        NOTES.append(f"teardown removed container {name}, left by a kit process that died")


@pytest.fixture(scope="session")
def docker_client() -> kit_docker.DockerClient:
    try:
        client = kit_docker.find_docker()
        kit_docker.check_daemon(client)
    except preflight.PreflightError as e:
        unavailable(f"no usable Docker: {e}")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The base the kit builds on in this session (exported as KIT_BASE_IMAGE for child processes)."""
    chosen = os.environ.get("KIT_BASE_IMAGE")
    if not chosen:
        default = images.default_base_image("hf")
        if images.inspect_image_id(docker_client, default):
            return ""
        if images.inspect_image_id(docker_client, LOCAL_BASE):
            chosen = LOCAL_BASE
        else:
            unavailable(f"neither the Dockerfile's base ({default}) nor {LOCAL_BASE} is present locally and no "
                        "registry may be reachable: set KIT_BASE_IMAGE (see .ci/run)")
    if not images.inspect_image_id(docker_client, chosen):
        unavailable(f"KIT_BASE_IMAGE={chosen} is not a local image")
    os.environ["KIT_BASE_IMAGE"] = chosen
    return chosen


def pytest_terminal_summary(terminalreporter):
    if NOTES:
        terminalreporter.section("docker figures")
        for note in NOTES:
            terminalreporter.write_line(note)


def pytest_report_header(config):
    return [f"docker tests: KIT_BASE_IMAGE={os.environ.get('KIT_BASE_IMAGE') or '(unset)'}, "
            f"KIT_CA_BUNDLE={os.environ.get('KIT_CA_BUNDLE') or '(unset)'}, CI={CI}"]


@pytest.fixture(scope="session")
def build_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("build-logs")


@pytest.fixture(scope="session")
def hf_image(docker_client, base_image, build_log_dir) -> images.ImageInfo:
    """The hf image, built by the kit or reused (as `nox -s bench-hf` would)."""
    info = images.ensure_image("hf", docker_client, log_dir=build_log_dir)
    size = images.image_size_bytes(docker_client, info.tag) or 0
    how = "reused" if info.build_seconds is None else f"built in {info.build_seconds:.1f}s"
    NOTES.append(f"hf image {info.tag} ({info.image_id[:19]}): {how}, {size / 1e9:.2f} GB")
    return info


@pytest.fixture
def kit_env(tmp_path, base_image):
    """Environment for a `python -m kit ...` child: caches and folders under tmp_path, no token unless planted."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update({
        "KIT_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"),
        "PYTHONPATH": str(REPO),
    })
    if base_image:
        env["KIT_BASE_IMAGE"] = base_image
    return env


@pytest.fixture(scope="session")
def nonroot_python(tmp_path_factory):
    """NonRoot(python, uid, gid, docker_gid, kit): what a non-root user needs to run the kit.

    Only root can switch uid. The kit's Python under /root is not readable by other users, so a small venv
    (pydantic, tabulate) is made from the system's python3 with uv; and the user runs their own copy
    of the checkout (owned by them), since this one may sit in a folder only root can read. uv installs them
    --offline, from its cache: nox has just installed the same packages into this suite's venv with uv, and a test
    must not ask the index.
    """
    if os.getuid() != 0:
        unavailable("switching to another uid needs root")
    uv = shutil.which("uv")
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if not uv or not system_python:
        unavailable("needs uv and /usr/bin/python3 to make a venv a non-root uid can run")
    # Not under pytest's basetemp: /tmp/pytest-of-root is 0700, so another uid could not reach it.
    d = Path(tempfile.mkdtemp(prefix="kit-nonroot-"))
    os.chmod(d, 0o755)
    venv = d / "venv"
    for cmd in ([uv, "venv", "-q", "--python", system_python, str(venv)],
                [uv, "pip", "install", "-q", "--offline", "--python", str(venv / "bin" / "python"), "pydantic>=2.6",
                 "tabulate>=0.9"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, UV_PYTHON_DOWNLOADS="never"))
        if r.returncode != 0:
            unavailable(f"could not make the non-root venv: {' '.join(cmd)}: {r.stderr.strip()[-500:]}")
    sock = Path((os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock").replace("unix://", ""))
    docker_gid = sock.stat().st_gid if sock.exists() else None
    kit = copy_kit(d / "kit")
    for p in [kit, *kit.rglob("*")]:
        os.chown(p, 4242, 4242, follow_symlinks=False)
    yield NonRoot(str(venv / "bin" / "python"), 4242, 4242, docker_gid, kit)
    shutil.rmtree(d, ignore_errors=True)
