"""Preflight against the real slurmctld: no sbatch, unknown partition, GPU types, folders the nodes cannot see."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from ci_policy import skip_or_fail
from conftest import REPO
from kit import slurm
from core.errors import KitError


def test_no_sbatch_on_path(tmp_path):
    with pytest.raises(KitError) as e:
        slurm.find_slurm(path=str(tmp_path))
    msg = str(e.value)
    assert "no `sbatch` on PATH" in msg and "login node" in msg and "\n" not in msg


def test_controller_down_is_one_paragraph(tmp_path):
    # The real client commands, pointed at a controller that does not exist (a slurm.conf of its own).
    sbatch = shutil.which("sbatch")
    if not sbatch:
        skip_or_fail("no sbatch on PATH; run .ci/slurm-up")
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=nowhere\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=1\n"
                    "NodeName=n1 CPUs=1\nPartitionName=p Nodes=n1 Default=YES\n")
    env = dict(os.environ, SLURM_CONF=str(conf))
    code = "from kit import slurm\ntry:\n    slurm.find_slurm()\nexcept Exception as e:\n    print(e)\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "the Slurm controller does not answer" in r.stdout, r.stdout + r.stderr


def test_partitions_as_sinfo_shows_them(tools):
    parts = slurm.partitions(tools)
    assert set(parts) >= {"debug", "urgent"}
    assert parts["debug"].default and not parts["urgent"].default
    assert parts["debug"].gres == ("gpu:fakea:1", "gpu:fakeb:1") and parts["debug"].gpu_types() == {"fakea", "fakeb"}
    assert slurm.preflight(tools, gpu_types=()).name == "debug"
    assert slurm.preflight(tools, partition="urgent", gpu_types=()).name == "urgent"


def test_unknown_partition(tools):
    with pytest.raises(KitError) as e:
        slurm.preflight(tools, partition="nopart", gpu_types=["fakea"])
    msg = str(e.value)
    assert "unknown partition 'nopart'" in msg and "debug (default)" in msg and "urgent" in msg
    assert "\n" not in msg
    # sbatch agrees, in its own words
    assert slurm.sbatch_test_only(tools, ["--partition=nopart"]) == "Invalid partition name specified"


def test_known_partition_with_extra_args_is_checked_by_the_controller(tools):
    assert slurm.preflight(tools, partition="urgent", gpu_types=["fakeb"], sbatch_args=["--time=5"]).name == "urgent"
    # Two fakea GPUs on one node do not exist: the sinfo check passes (the type is known), sbatch --test-only not.
    with pytest.raises(KitError) as e:
        slurm.preflight(tools, gpu_types=["fakea"], sbatch_args=["--gres=gpu:fakea:2"])
    assert "Requested node configuration is not available" in str(e.value)
    assert "nothing was submitted" in str(e.value)


def test_gres_parsing():
    assert slurm.split_gres("gpu:a100:4(S:0,1),gpu:t4:2,(null)") == ["gpu:a100:4(S:0,1)", "gpu:t4:2"]
    assert slurm.parse_gres("gpu:a100:4(S:0-1)") == ("gpu", "a100", 4)
    assert slurm.parse_gres("gpu:2") == ("gpu", None, 2)
    assert slurm.parse_gres("gpu") == ("gpu", None, 1)
    assert slurm.parse_gres("bandwidth:lustre:4G") == ("bandwidth", "lustre", 4 * 1024 ** 3)
    cpu_only = slurm.Partition("cpu", False, True, ())
    (msg,) = slurm.check_gpu_types(cpu_only, ["a100", "t4"])
    assert "partition 'cpu' has no GPUs" in msg
    untyped = slurm.Partition("p", True, True, ("gpu:4",))
    assert slurm.check_gpu_types(untyped, [None]) == []
    (msg,) = slurm.check_gpu_types(untyped, ["a100"])
    assert "untyped GPUs only" in msg


def test_results_folder_visible(tools, tmp_path):
    results = tmp_path / "results"
    logs = tmp_path / "logs"
    slurm.check_visible(tools, [results, logs], partition="debug", timeout_s=60)
    assert list(results.iterdir()) == [] and list(logs.iterdir()) == []  # the probe cleaned up
    # the user's GPU request and time limit are not the probe's: it needs 1 CPU for seconds
    slurm.check_visible(tools, [results], partition="debug", sbatch_args=["--gres=gpu:fakea:2", "--time=10"])


def test_results_folder_the_node_cannot_see(tools, tmp_path):
    """Simulated on one machine: the kit runs in a mount namespace of its own with a tmpfs over a folder, so it
    sees files there that slurmd (and so the job) does not: what a folder on a login node's local disk is to a
    compute node. The node sees the (empty) mount point only, so it finds no token."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        skip_or_fail("needs root and unshare(1) for a private mount namespace")
    private = tmp_path / "login-node-only"
    private.mkdir()
    code = textwrap.dedent(f"""
        from kit import slurm
        from core.errors import KitError
        tools = slurm.find_slurm()
        try:
            slurm.check_visible(tools, ["{private}/results"], partition="debug", timeout_s=60)
            print("VISIBLE")
        except KitError as e:
            print("ERROR:", e)
    """)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f'mount -t tmpfs kit-private "{private}" && exec "$0" -c "$1"', sys.executable, code],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    if "mount" in r.stderr and r.returncode != 0 and "ERROR" not in r.stdout:
        skip_or_fail(f"no private mount namespace here: {r.stderr.strip()[:300]}")
    out = r.stdout.strip()
    assert out.startswith("ERROR:"), (out, r.stderr)
    assert f"does not see the folder {private}/results" in out
    assert "No such file or directory" in out  # the probe's own words, from the node
    assert "a filesystem the nodes share with this machine" in out and "\n" not in out
    assert list(private.iterdir()) == []  # outside the namespace nothing was left
