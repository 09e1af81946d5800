"""HF_TOKEN reaches the container at run time only: never an image layer, history, label, result, log or report.

A fake token is planted in the environment of the kit's real entry points. The kit then builds an image (a
new tag on an alias of the base, so the build really runs, from BuildKit's cache) and runs a containerized CPU
bench with it; a second step proves the token did arrive inside the container (it prints only its sha256).
Then every place a token could leak to is searched for the planted value: the build's argv and log, `docker
history --no-trunc`, `docker image inspect`, every byte of `docker save` (all layers), the results, the
container logs, the reports, the caches and the kit's own output.
"""
from __future__ import annotations

import hashlib
import secrets
import subprocess
from pathlib import Path

import pytest

from kit import images
from kit.runners import RunnerOptions, Step
from kit.runners.docker import run_in_image
from dockerkit import CPU_BENCH, NOTES, kit_dirs, run_kit


def stream_contains(cmd: list[str], needle: bytes, env: dict) -> tuple[bool, int]:
    """(found, bytes scanned) of a command's stdout, scanned as a stream (docker save is GBs)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    keep = len(needle) - 1
    prev = b""
    total = 0
    found = False
    while True:
        chunk = proc.stdout.read(1 << 22)
        if not chunk:
            break
        total += len(chunk)
        if needle in prev + chunk:
            found = True
        prev = (prev + chunk)[-keep:]
    assert proc.wait() == 0, f"{cmd} failed"
    return found, total


def files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for p in Path(root).rglob("*"):
        if p.is_file() and not p.is_symlink():
            if needle in p.read_bytes():
                hits.append(p)
    return hits


@pytest.fixture
def planted_token(monkeypatch):
    token = "hf_kitFAKE" + secrets.token_hex(16)
    monkeypatch.setenv("HF_TOKEN", token)
    return token


@pytest.fixture
def token_image(docker_client, hf_image, base_image):
    """A base alias, so that the kit's build runs (BuildKit reuses the cached layers) with the token planted."""
    source = base_image or images.default_base_image("hf")
    alias = f"kit-token-test-base:{secrets.token_hex(4)}"
    subprocess.run([docker_client.path, "tag", source, alias], check=True, env=docker_client.env())
    tag = images.image_tag("hf", images.base_identity(docker_client, alias))
    yield alias, tag
    subprocess.run([docker_client.path, "rmi", tag, alias], capture_output=True, env=docker_client.env())


def test_token_never_persists(docker_client, hf_image, token_image, planted_token, kit_env, tmp_path,
                               monkeypatch):
    alias, tag = token_image
    needle = planted_token.encode()
    kit_env["KIT_BASE_IMAGE"] = alias
    kit_env["HF_TOKEN"] = planted_token

    # 1. The kit's real entry point: builds `tag` (token in its environment), then the CPU bench in it.
    r = run_kit(["bench-hf", "--runner", "docker", *kit_dirs(tmp_path), *CPU_BENCH], kit_env, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"[image hf] building {tag}" in r.stdout, "the build must have run with the token planted"
    results = list((tmp_path / "results").glob("*.json"))
    assert len(results) == 1
    image_id = images.inspect_image_id(docker_client, tag)
    assert image_id

    # 2. The token did reach the container at run time (only its hash is printed).
    monkeypatch.setenv("KIT_BASE_IMAGE", alias)
    opts = RunnerOptions(results_dir=tmp_path / "results", output_dir=tmp_path / "output",
                         cache_dir=tmp_path / "cache", hf_home=tmp_path / "hf-home")
    step = Step("hf", ("-c", "import hashlib, os; print('token-sha256', "
                             "hashlib.sha256(os.environ['HF_TOKEN'].encode()).hexdigest())"),
                description="token arrives")
    assert run_in_image(step, opts, log_name="token-check.log") == 0
    check_log = (tmp_path / "output" / "logs" / "token-check.log").read_text()
    assert f"token-sha256 {hashlib.sha256(needle).hexdigest()}" in check_log

    # 3. ... and is nowhere it could persist.
    assert needle not in (r.stdout + r.stderr).encode(), "the kit's own output"
    leaks = files_containing(tmp_path, needle)
    assert not leaks, f"token found in {leaks}"
    logs = list((tmp_path / "output" / "logs").glob("*.log"))
    assert any(p.name.startswith("build-hf-") for p in logs) and len(logs) >= 3  # build, bench, token check
    run_lines = [p.read_text().splitlines()[0] for p in logs if p.read_text().startswith("$ ")]
    assert run_lines and all(" -e HF_TOKEN " in line + " " and "HF_TOKEN=" not in line for line in run_lines), (
        "docker run must get HF_TOKEN by name only")
    env = docker_client.env()
    for cmd in (["history", "--no-trunc", tag], ["image", "inspect", tag]):
        out = subprocess.run([docker_client.path, *cmd], capture_output=True, check=True, env=env).stdout
        assert out and needle not in out, f"docker {' '.join(cmd)}"
        assert b"HF_TOKEN" not in out
    found, scanned = stream_contains([docker_client.path, "save", tag], needle, env)
    NOTES.append(f"token hygiene: docker save {tag}: {scanned / 1e9:.2f} GB scanned, token not found")
    assert scanned > 1e9 and not found, "the token is in an image layer"
    # This test's own containers (named in their logs), not every kit container on the daemon: another kit run,
    # or another test run, may be using the same daemon right now.
    names = [line.split(" --name ", 1)[1].split()[0] for line in run_lines]
    leftovers = [n for n in names if subprocess.run([docker_client.path, "inspect", n], capture_output=True,
                                                    env=env).returncode == 0]
    assert len(names) >= 2 and not leftovers, f"containers are run with --rm and removed: {leftovers}"


def test_token_absent_means_not_passed(docker_client, hf_image, tmp_path, monkeypatch):
    """No HF_TOKEN in the environment: no -e HF_TOKEN at all (and nothing breaks)."""
    from kit.runners.docker import container_env, docker_run_command

    monkeypatch.delenv("HF_TOKEN", raising=False)
    opts = RunnerOptions(results_dir=tmp_path / "r", output_dir=tmp_path / "o", cache_dir=tmp_path / "c",
                         hf_home=tmp_path / "h")
    step = Step("hf", ("-m", "bench", "run"))
    cmd = docker_run_command(docker_client.path, step, opts, hf_image.tag,
                             container_env(opts, hf_image.env(), "hf"), name="x")
    assert "HF_TOKEN" not in " ".join(cmd)
