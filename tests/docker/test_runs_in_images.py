"""The kit's real entry points inside the real hf image, on the CPU: valid results with the image's provenance,
files owned by the invoking uid (root and a non-root uid), and a code-only change that rebuilds nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from kit import images
from core.results import BenchResult, ProfileResult, load_result
from dockerkit import CPU_BENCH, NOTES, copy_kit, kit_dirs, run_kit, world_dir


def _check_provenance(result, hf_image):
    prov = result.provenance
    assert prov.runner == "docker"
    assert prov.image_id == hf_image.image_id
    assert prov.image_tag == hf_image.tag
    assert prov.lock_hash == images.lock_hash("hf") == hf_image.lock_hash
    assert prov.libraries.get("torch") == "2.9.1" and prov.libraries.get("transformers") == "4.51.3"
    assert prov.libraries.get("autoawq") == "0.2.9"
    assert prov.gpu is None and result.backend.device == "cpu"


def test_cpu_bench_and_profile_in_the_hf_image(hf_image, kit_env, tmp_path):
    r = run_kit(["bench-hf", "--runner", "docker", *kit_dirs(tmp_path), *CPU_BENCH], kit_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"reusing {hf_image.tag}" in r.stdout
    r = run_kit(["profile", "--runner", "docker", *kit_dirs(tmp_path), "--synthetic", "tiny", "--device", "cpu",
                 "--input-len", "16"], kit_env)
    assert r.returncode == 0, r.stderr[-3000:]

    loaded = [load_result(p) for p in sorted((tmp_path / "results").glob("*.json"))]
    bench = [x for x in loaded if isinstance(x, BenchResult)]
    prof = [x for x in loaded if isinstance(x, ProfileResult)]
    assert len(bench) == 1 and len(prof) == 1, [type(x).__name__ for x in loaded]
    for result in loaded:
        _check_provenance(result, hf_image)
    assert bench[0].workload.synthetic and bench[0].workload.output_len == 4
    assert len(bench[0].samples.ttft_ms) == 2 and all(x > 0 for x in bench[0].samples.ttft_ms)
    assert prof[0].phases and all(ph.rows for ph in prof[0].phases)
    assert (tmp_path / "reports" / "week1.md").is_file() and (tmp_path / "reports" / "week2.md").is_file()

    # Owned by the invoking uid; the runner passed --user uid:gid.
    for p in list((tmp_path / "results").rglob("*")) + list((tmp_path / "output").rglob("*")):
        assert p.stat().st_uid == os.getuid(), f"{p} is owned by uid {p.stat().st_uid}"
    run_logs = [p.read_text() for p in (tmp_path / "output" / "logs").glob("*.log")]
    assert any(f"--user {os.getuid()}:{os.getgid()}" in t.splitlines()[0] for t in run_logs if t.startswith("$ "))


def test_results_owned_by_a_nonroot_uid(nonroot_python, hf_image, base_image):
    """The whole kit run as uid 4242 (in the docker group): every file it makes belongs to 4242."""
    python, uid, gid, docker_gid, kit = nonroot_python
    assert docker_gid is not None, "the docker socket's group is needed to run as another uid"
    d = world_dir("kit-owner-")
    try:
        for sub in ("home", "results", "output", "reports", "cache", "hf-home"):
            (d / sub).mkdir()
            os.chown(d / sub, uid, gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(d / "home"), "PYTHONPATH": str(kit),
               "KIT_CACHE_DIR": str(d / "cache"), "HF_HOME": str(d / "hf-home"), "LANG": "C.UTF-8"}
        if base_image:
            env["KIT_BASE_IMAGE"] = base_image
        for key in ("DOCKER_HOST", "KIT_DOCKER"):
            if os.environ.get(key):
                env[key] = os.environ[key]
        r = run_kit(["bench-hf", "--runner", "docker", "--no-report", "--results-dir", str(d / "results"),
                     "--output-dir", str(d / "output"), *CPU_BENCH], env, python=python, cwd=kit,
                    user=uid, group=gid, extra_groups=[docker_gid])
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"reusing {hf_image.tag}" in r.stdout and f"uid {uid}" in r.stdout
        made = [p for sub in ("results", "output", "cache") for p in (d / sub).rglob("*")]
        assert any(p.suffix == ".json" for p in made)
        wrong = [(str(p), p.stat().st_uid) for p in made if p.stat().st_uid != uid]
        assert not wrong, f"not owned by uid {uid}: {wrong[:5]}"
        result = load_result(next((d / "results").glob("*.json")))
        assert result.provenance.image_id == hf_image.image_id
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_code_only_change_rebuilds_no_layer(docker_client, hf_image, base_image, tmp_path):
    """Change code under bench/ and profile/ in a copy of the kit: same tag, and a forced rebuild reuses every
    layer and yields the very same image id."""
    copy = copy_kit(tmp_path / "kit")
    for f in (copy / "bench" / "__init__.py", copy / "profile" / "run_profile.py"):
        f.write_text(f.read_text() + "\n# a code-only change\n")
    code = ("import sys; from kit.docker_client import find_docker; from kit.images import ensure_image, image_tag\n"
            "c = find_docker(); i = ensure_image('hf', c, force_build=True, log_dir=sys.argv[1])\n"
            "print('RESULT', i.tag, i.image_id, i.cached_steps, i.run_steps)\n")
    env = dict(os.environ, PYTHONPATH=str(copy))
    if base_image:
        env["KIT_BASE_IMAGE"] = base_image
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "logs")], cwd=copy, env=env,
                       capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - t0
    print(r.stdout[-3000:], r.stderr[-2000:])
    assert r.returncode == 0
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1].split()
    tag, image_id, cached, ran = line[1], line[2], int(line[3]), int(line[4])
    assert tag == hf_image.tag, "a code change must not change the image's content hash"
    assert ran == 0 and cached >= 5, f"{ran} step(s) re-ran, {cached} cached"
    assert image_id == hf_image.image_id, "same layers and config: the same image"
    history = subprocess.run([docker_client.path, "history", "-q", tag], capture_output=True, text=True,
                             env=docker_client.env()).stdout.split()
    assert history, "the image has its history"
    NOTES.append(f"forced rebuild of the hf image after a code-only change: {seconds:.1f}s, {cached} steps cached, "
                 "0 re-run, same image id")
