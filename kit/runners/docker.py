"""Docker runner: one Step inside its stack's pinned image (`docker run --rm --init`). docs/images.md, "The Docker
runner", describes the mounts (the checkout read-only at /kit: code is never baked), the invoking user, secrets passed
by name only, Ctrl-C, and why no container outlives its kit process (the kit.owner label, the guard process, the sweep).
"""
from __future__ import annotations

import argparse
import os
import secrets
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from core.errors import KitError
from core.workload import WorkloadSpec
from kit import KIT_ROOT, docker_client, preflight
from kit.images import STACK_INFO, STACKS, current_tag, ensure_image, resolve_ca_bundle, vllm_series_of
from kit.runners.base import RunnerOptions, Step, child_env

# Where the host folders appear inside the container.
KIT_MOUNT = "/kit"
RESULTS_MOUNT = "/results"
OUTPUT_MOUNT = "/output"
CACHE_MOUNT = "/cache"
HF_MOUNT = "/hf-cache"
VLLM_CACHE_MOUNT = "/vllm-cache"
MODEL_MOUNT = "/models"  # model folders outside the checkout, read-only
CA_MOUNT = "/run/kit/ca-bundle.pem"

SHM_SIZE = os.environ.get("KIT_SHM_SIZE", "8g")
# Secrets: passed by name (`-e NAME`), only when set in the invoking environment.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Plain settings forwarded by name when set (e.g. HF_HUB_OFFLINE=1 for a pre-filled cache).
FORWARD_ENV = ("CI", "HF_HUB_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER", "CUDA_VISIBLE_DEVICES", "VLLM_LOGGING_LEVEL")
# In a Slurm job (--runner slurm): what the result's provenance records about the job (bench/provenance.py).
SLURM_ENV = ("SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_JOB_PARTITION", "KIT_SLURM_GPU_TYPE")
RUNNER_LABEL = "kit.runner=docker"
OWNER_LABEL = "kit.owner"


def _machine_id() -> Optional[str]:
    """'<boot id>/<pid namespace>': processes with this prefix can be looked up in this /proc. None without /proc."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def owner_tag(pid: Optional[int] = None) -> Optional[str]:
    """'<machine>/<pid>/<start time>' of a live process (the start time tells a reused pid apart); None when the
    process is gone or this system has no /proc."""
    machine = _machine_id()
    pid = os.getpid() if pid is None else pid
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{machine}/{pid}/{start}" if machine else None


def is_stale_owner(owner: str) -> bool:
    """A kit.owner label whose process has ended on this machine. Other machines' owners are never stale here."""
    machine = _machine_id()
    parts = owner.rsplit("/", 2)
    if not machine or len(parts) != 3 or parts[0] != machine or not parts[1].isdigit():
        return False
    return owner_tag(int(parts[1])) != owner


def sweep_stale_containers(client) -> list[str]:
    """Remove the kit's containers whose kit process died without removing them; returns their names."""
    r = client.run("ps", "--all", "--filter", f"label={RUNNER_LABEL}",
                   "--format", f'{{{{.Names}}}}\t{{{{.Label "{OWNER_LABEL}"}}}}')
    stale = [name for name, _, owner in (line.partition("\t") for line in r.stdout.splitlines())
             if r.returncode == 0 and is_stale_owner(owner)]
    for name in stale:
        client.run("rm", "--force", name)
        print(f"[docker] removed container {name}: the kit process that started it is gone", file=sys.stderr,
              flush=True)
    return stale


def _writable_mounts(opts: RunnerOptions, stack: str) -> list[tuple[Path, str]]:
    """The host folders the container writes to, and where it sees them."""
    vllm_cache = Path(os.environ.get("VLLM_CACHE_ROOT", Path.home() / ".cache" / "vllm"))
    return [(opts.results_dir, RESULTS_MOUNT), (opts.output_dir, OUTPUT_MOUNT), (opts.cache_dir, CACHE_MOUNT),
            (opts.hf_home, HF_MOUNT)] + ([(vllm_cache, VLLM_CACHE_MOUNT)] if vllm_series_of(stack) else [])


def map_host_paths(workload: WorkloadSpec) -> tuple[WorkloadSpec, list[tuple[Path, str]]]:
    """The workload with its `model` / `synthetic` host paths rewritten into container paths.

    Paths inside the kit checkout map to /kit/...; others are bind-mounted read-only under /models/.
    Hub ids and config names (no such file or folder on the host) are left alone. Returns (workload, mounts).
    """
    changes: dict[str, str] = {}
    mounts: list[tuple[Path, str]] = []
    for name in ("model", "synthetic"):
        value = getattr(workload, name)
        if not value or not os.path.exists(os.path.expanduser(value)):
            continue
        host = Path(os.path.expanduser(value)).resolve()
        try:
            changes[name] = f"{KIT_MOUNT}/{host.relative_to(KIT_ROOT)}"
        except ValueError:
            changes[name] = f"{MODEL_MOUNT}/{len(mounts)}/{host.name}"
            mounts.append((host, changes[name]))
    return workload.replace(**changes), mounts


def docker_run_command(client_path: str, step: Step, opts: RunnerOptions, image_tag: str, env: dict[str, str], *,
                       name: str) -> list[str]:
    """The exact `docker run` argv (no secret values in it: those go by name)."""
    cmd = [client_path, "run", "--rm", "--init", "--name", name,
           "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp", "-e", f"USER={os.environ.get('USER') or 'kit'}",
           "--workdir", KIT_MOUNT, "--label", RUNNER_LABEL, "--label", f"{OWNER_LABEL}={owner_tag() or ''}"]
    cmd += ["--gpus", "all", "--shm-size", SHM_SIZE] if step.needs_gpu else ["--shm-size", "1g"]
    mounts = [(KIT_ROOT, KIT_MOUNT, "ro")] + [(host, path, "rw") for host, path in _writable_mounts(opts, step.stack)]
    if opts.ca_bundle:
        mounts.append((opts.ca_bundle, CA_MOUNT, "ro"))
    workload, path_mounts = map_host_paths(step.workload) if step.workload else (None, [])
    mounts += [(host, target, "ro") for host, target in path_mounts]
    for host, target, mode in mounts:
        cmd += ["--mount", f"type=bind,source={Path(host).resolve()},target={target}"
                + (",readonly" if mode == "ro" else "")]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    for key in FORWARD_ENV + SLURM_ENV + SECRET_ENV:
        if os.environ.get(key):
            cmd += ["-e", key]  # by name: docker reads the value from its own environment
    cmd += [image_tag, "python", *step.command(workload)]
    return cmd


def container_env(opts: RunnerOptions, image_env: dict[str, str], stack: str) -> dict[str, str]:
    env = child_env(opts, results_dir=RESULTS_MOUNT, output_dir=OUTPUT_MOUNT, cache_dir=CACHE_MOUNT,
                    runner="docker", image=image_env)
    env["HF_HOME"] = HF_MOUNT
    env["KIT_STACK"] = stack  # whose lock the provenance compares the installed versions with
    env["TRITON_CACHE_DIR"] = f"{CACHE_MOUNT}/triton"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # /kit is read-only
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA_VISIBLE_DEVICES then means nvidia-smi's numbers, as preflight does
    if vllm_series_of(stack):
        env["VLLM_CACHE_ROOT"] = VLLM_CACHE_MOUNT
    if opts.ca_bundle:
        env.update(dict.fromkeys(("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"), CA_MOUNT))
    for key in SECRET_ENV:
        env.pop(key, None)  # never as KEY=value
    return env


def _stop_container(client, name: str, proc: subprocess.Popen, drain, grace_s: float) -> int:
    """After Ctrl-C: let the container finish its interrupt handling, then insist. A second Ctrl-C kills it.
    grace_s: how long the container gets after the SIGINT (a Slurm job being cancelled has only KillWait)."""
    try:
        deadline = time.monotonic() + min(2.0, grace_s)
        while proc.poll() is None and time.monotonic() < deadline:
            drain(0.2)
        if proc.poll() is None and client.run("inspect", "--format", "{{.State.Running}}",
                                              name).stdout.strip() == "true":
            print(f"\n[docker] interrupt: sending SIGINT to container {name}", file=sys.stderr, flush=True)
            client.run("kill", "--signal", "INT", name)
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            drain(0.5)
        if proc.poll() is None:
            print(f"[docker] container {name} still running after {grace_s:.0f}s: docker stop",
                  file=sys.stderr, flush=True)
            client.run("stop", "--time", str(max(1, min(10, round(grace_s)))), name)
    except KeyboardInterrupt:
        print(f"\n[docker] second interrupt: killing container {name}", file=sys.stderr, flush=True)
        client.run("kill", name)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _run_attached(client, name: str, cmd: list[str], log_path: Path, tail: bytearray, grace_s: float) -> int:
    """`docker run` in the foreground, its output shown live and logged; on Ctrl-C the container is stopped."""
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=client.env())
        assert proc.stdout is not None
        fd = proc.stdout.fileno()

        def drain(timeout: Optional[float] = None) -> Optional[bool]:
            """Copy what the container printed to the terminal and the log: True (data), None (nothing within
            timeout), False (end of output)."""
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return False
            log.write(chunk)
            log.flush()
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            tail.extend(chunk)
            del tail[:-8192]
            return True

        try:
            while drain(None):
                pass
            rc = proc.wait()
        except KeyboardInterrupt:
            _stop_container(client, name, proc, drain, grace_s)
            deadline = time.monotonic() + 5.0  # what the container printed last (its interrupt report)
            while time.monotonic() < deadline and drain(0.5) is not False:
                pass
            raise
    return rc


def docker_preflight(stacks: tuple[str, ...] = (), *, gpu_workload: Optional[WorkloadSpec] = None,
                     vllm_series: Optional[str] = None) -> docker_client.DockerClient:
    """The checks before a Docker step, each one paragraph: the client and its daemon; the GPU, when the step needs
    one (gpu_workload: its workload, vllm_series: the vLLM that will run it); free disk for each of `stacks` whose image
    is not built yet. Returns the client to use."""
    client = docker_client.find_docker()
    docker_client.check_daemon(client)
    if gpu_workload is not None:
        preflight.check_gpu_step(client, gpu_workload, vllm_series)
    for stack in stacks:
        if not docker_client.inspect_image_id(client, current_tag(stack, client)):
            docker_client.check_disk(client, STACK_INFO[stack].build_free_gb, f"building the {stack} image")
    return client


def run_in_image(step: Step, opts: RunnerOptions, *, client=None, image=None, log_name: Optional[str] = None) -> int:
    """Run a step in its image, streaming and logging its output; returns the exit code.

    Raises KeyboardInterrupt after stopping the container on Ctrl-C.
    """
    if client is None:
        client = docker_preflight(() if image else (step.stack,), gpu_workload=step.workload if step.needs_gpu
                                            else None, vllm_series=vllm_series_of(step.stack))
    sweep_stale_containers(client)
    if image is None:
        image = ensure_image(step.stack, client, ca_bundle=opts.ca_bundle, log_dir=opts.output_dir / "logs")
    name = f"awq-kit-{step.stack}-{secrets.token_hex(4)}"
    env = container_env(opts, image.env(), step.stack)
    cmd = docker_run_command(client.path, step, opts, image.tag, env, name=name)
    log_path = opts.output_dir / "logs" / (log_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{name}.log")
    print(f"[docker] {step.description or step.stack}: {image.tag} ({image.image_id[:19]}), "
          f"{'GPU' if step.needs_gpu else 'CPU'}, uid {os.getuid()}; log: {log_path}", flush=True)

    tail = bytearray()
    for d in [opts.output_dir / "logs"] + [host for host, _ in _writable_mounts(opts, step.stack)]:
        try:
            Path(d).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KitError(f"cannot create {d} for the container's mounts ({e}). Choose writable folders "
                           "(--results-dir, --output-dir, KIT_CACHE_DIR, HF_HOME).")
    # In its own session, the guard removes the container once this process closes the pipe or dies.
    guard = subprocess.Popen([sys.executable, "-m", "kit.runners.container_guard", client.path, name],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=KIT_ROOT, env=client.env(), start_new_session=True)
    try:
        rc = _run_attached(client, name, cmd, log_path, tail, opts.interrupt_grace_s)
    finally:
        guard.stdin.close()  # the kit is done with the container: the guard removes whatever is left of it
        guard.wait()
    if rc == 125 and preflight.NVIDIA_DAEMON_MESSAGE in tail.decode("utf-8", "replace"):
        raise preflight.PreflightError(preflight.nvidia_runtime_paragraph())
    return rc


def run_docker(step: Step, opts: RunnerOptions) -> None:
    rc = run_in_image(step, opts)
    what = step.description or " ".join(step.argv)
    if rc == 125:
        raise KitError(f"{what}: docker could not start the container (exit code 125); docker's own message is "
                       "printed above.")
    if rc != 0:
        raise KitError(f"{what} failed inside the {step.stack} image (exit code {rc}). Its own message is printed "
                       f"above and kept under {opts.output_dir / 'logs'}; nothing incomplete was written to the "
                       "results folder.")


# `python -m kit container-pytest STACK -- PYTEST ARGS`: what tests-container, tests-vllm and tests-vllm-0.20 call.
def container_pytest_main(argv: list[str]) -> None:
    kit_args, pytest_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python -m kit container-pytest",
                                usage="%(prog)s STACK [--ca-bundle PATH] -- [PYTEST ARGS ...]",
                                description="Build or reuse STACK's pinned image and run `python -m pytest PYTEST "
                                            "ARGS` in it (kit at /kit read-only, CPU); exits with pytest's exit code.",
                                epilog="Everything after `--` goes to pytest (test paths, -k, -x, -v ...).")
    p.add_argument("stack", choices=STACKS)
    p.add_argument("--ca-bundle", type=Path, help="CA bundle for the image build (BuildKit secret); also KIT_CA_BUNDLE")
    ns = p.parse_args(kit_args)
    ca = resolve_ca_bundle(ns.ca_bundle)
    client = docker_preflight((ns.stack,))
    with tempfile.TemporaryDirectory(prefix=f"kit-pytest-{ns.stack}-") as tmp:
        # Logs (the build's, and pytest's whole output) under output/logs as for a bench; no result is written.
        opts = RunnerOptions(runner="docker", results_dir=Path(tmp) / "results", ca_bundle=ca)
        image = ensure_image(ns.stack, client, ca_bundle=ca, log_dir=opts.output_dir / "logs")
        # /kit is read-only: no .pytest_cache (and no bytecode: the runner sets PYTHONDONTWRITEBYTECODE).
        argv = ("-m", "pytest", "-p", "no:cacheprovider", *pytest_args)
        step = Step(ns.stack, argv, description=f"pytest {' '.join(pytest_args)} in the {ns.stack} image")
        raise SystemExit(run_in_image(step, opts, client=client, image=image))
