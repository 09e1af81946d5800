"""`nox -s wheelhouse` and `nox -s venv -- STACK --wheelhouse DIR`, on a small stack of its own
(tests/stacks/offline: tabulate, a pure wheel; bcrypt, an abi3 manylinux wheel; docopt, sdist only, built once into
the wheelhouse), with its real hashed locks.

The wheelhouse is made once per session: `.ci/run` makes it with `nox -s wheelhouse` before the suites
(KIT_TEST_WHEELHOUSE), so these tests need no index; without that variable the fixture makes it here (needs PyPI).
The offline install then runs with the network cut (`unshare -n`, a network namespace with no interface up).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci_policy import skip_or_fail
from kit import KIT_ROOT
from kit import wheelhouse

STACK = KIT_ROOT / "tests" / "stacks" / "offline"


def _kit(*args: str, offline: bool = False, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kit", *args]
    return subprocess.run((["unshare", "-n"] if offline else []) + cmd, cwd=KIT_ROOT, capture_output=True,
                          text=True, **kw)


@pytest.fixture(scope="session")
def made_wheelhouse(tmp_path_factory) -> Path:
    given = os.environ.get("KIT_TEST_WHEELHOUSE")
    if given:
        return Path(given)
    dest = tmp_path_factory.mktemp("wheelhouse")
    r = _kit("wheelhouse", str(STACK), "--dest", str(dest))
    if r.returncode != 0:
        skip_or_fail(f"could not make the test wheelhouse (needs PyPI and pip; .ci/run makes it beforehand and sets "
                     f"KIT_TEST_WHEELHOUSE): {r.stderr.strip()[-400:]}")
    return dest


@pytest.fixture
def house(made_wheelhouse, tmp_path) -> Path:
    """A private copy: tests alter files in it."""
    return Path(shutil.copytree(made_wheelhouse, tmp_path / "wh"))


@pytest.fixture(scope="session")
def network_cut():
    r = subprocess.run(["unshare", "-n", sys.executable, "-c",
                        "import socket\ntry:\n socket.create_connection(('pypi.org', 443), timeout=3)\n"
                        "except OSError: print('cut')"], capture_output=True, text=True)
    if r.stdout.strip() != "cut":
        skip_or_fail(f"`unshare -n` cannot cut the network here (needs root or user namespaces): {r.stderr.strip()}")


def test_the_wheelhouse_holds_the_locks_files_for_the_locks_platform(made_wheelhouse):
    names = sorted(p.name for p in made_wheelhouse.iterdir())
    assert "tabulate-0.9.0-py3-none-any.whl" in names
    bcrypt = [n for n in names if n.startswith("bcrypt-4.3.0-")]
    assert len(bcrypt) == 1 and "abi3-manylinux" in bcrypt[0] and bcrypt[0].endswith("_x86_64.whl"), bcrypt
    manifest = json.loads((made_wheelhouse / "wheelhouse-offline.json").read_text())
    assert (manifest["python"], manifest["platform"]) == ("3.12", "x86_64-manylinux_2_35")
    [built] = manifest["built"]
    pins = {p.name: p for p in wheelhouse.read_pins(STACK)}
    assert built["name"] == "docopt" and built["file"] in names and built["file"].endswith("-none-any.whl")
    assert built["built_from"]["sha256"] in pins["docopt"].hashes, "the sdist it was built from is the locked one"
    assert built["sha256"] == wheelhouse.sha256_file(made_wheelhouse / built["file"])
    assert manifest["locks_sha256"] == wheelhouse.locks_sha256(STACK)


def test_venv_from_the_wheelhouse_with_the_network_cut(house, tmp_path, network_cut):
    venv = tmp_path / "venv"
    r = _kit("venv", str(STACK), "--wheelhouse", str(house), "--venv", str(venv), offline=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "with no index, every hash checked" in r.stdout
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import bcrypt, docopt, tabulate, importlib.metadata as m; "
                            "print(m.version('bcrypt'), m.version('docopt'), m.version('tabulate'), m.version('pip'))"],
                           capture_output=True, text=True)
    assert probe.stdout.split() == ["4.3.0", "0.6.2", "0.9.0", "25.3"], probe.stderr


def _one_paragraph(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.strip()
    assert "Traceback" not in err, err
    return err.split("error: ", 1)[1]


def test_a_tampered_wheel_is_refused_and_nothing_is_installed(house, tmp_path, network_cut):
    wheel = house / "tabulate-0.9.0-py3-none-any.whl"
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    venv = tmp_path / "venv"
    r = _kit("venv", str(STACK), "--wheelhouse", str(house), "--venv", str(venv), offline=True)
    assert r.returncode != 0
    message = _one_paragraph(r)
    assert "tabulate==0.9.0 (tabulate-0.9.0-py3-none-any.whl)" in message and "altered" in message
    assert "Nothing was installed" in message and not venv.exists()


def test_a_missing_wheel_is_named(house, tmp_path):
    next(house.glob("bcrypt-*.whl")).unlink()
    r = _kit("venv", str(STACK), "--wheelhouse", str(house), "--venv", str(tmp_path / "venv"))
    assert r.returncode != 0
    assert "no file at all: bcrypt==4.3.0" in _one_paragraph(r)


def test_a_tampered_built_wheel_is_refused(house, tmp_path):
    manifest = json.loads((house / "wheelhouse-offline.json").read_text())
    built = house / manifest["built"][0]["file"]
    built.write_bytes(built.read_bytes() + b"\0")
    r = _kit("venv", str(STACK), "--wheelhouse", str(house), "--venv", str(tmp_path / "venv"))
    assert r.returncode != 0 and "docopt==0.6.2" in _one_paragraph(r)


def test_a_wheelhouse_of_other_locks_is_refused(house, tmp_path):
    path = house / "wheelhouse-offline.json"
    path.write_text(path.read_text().replace(wheelhouse.locks_sha256(STACK), "0" * 64))
    r = _kit("venv", str(STACK), "--wheelhouse", str(house), "--venv", str(tmp_path / "venv"))
    assert r.returncode != 0 and "made from other locks" in _one_paragraph(r)


def test_a_half_made_venv_is_removed(house, tmp_path, monkeypatch):
    """A failure after the venv exists (here: the main lock's install) leaves no venv behind."""
    calls = []

    def fail_on_the_main_lock(python, pip, requirements, where, *extra):
        calls.append(pip)
        if "--no-build-isolation" in extra:
            raise wheelhouse.KitError("pip failed (planted)")
        return real(python, pip, requirements, where, *extra)

    real = wheelhouse._offline_install
    monkeypatch.setattr(wheelhouse, "_offline_install", fail_on_the_main_lock)
    venv = tmp_path / "venv"
    with pytest.raises(wheelhouse.KitError, match="planted"):
        wheelhouse.make_venv_offline("offline", STACK, house, sys.executable, venv)
    assert len(calls) == 2 and not venv.exists()


def test_pip_platforms_cover_every_older_glibc():
    tags = wheelhouse.pip_platforms("x86_64-manylinux_2_35")
    assert tags[0] == "manylinux_2_35_x86_64" and "manylinux_2_17_x86_64" in tags and tags[-1] == "manylinux1_x86_64"
    assert "manylinux_2_36_x86_64" not in tags and "manylinux2014_x86_64" in tags
    with pytest.raises(wheelhouse.KitError):
        wheelhouse.pip_platforms("win_amd64")


def test_dist_of_reads_wheel_and_sdist_names():
    assert wheelhouse.dist_of("Flashinfer_Python-0.5.3-cp39-abi3-manylinux_2_28_x86_64.whl") == ("flashinfer-python",
                                                                                                  "0.5.3")
    assert wheelhouse.dist_of("docopt-0.6.2.tar.gz") == ("docopt", "0.6.2")
    assert wheelhouse.dist_of("wheelhouse-hf.json") is None
