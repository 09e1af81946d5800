"""Sessions of the AWQ reproduction kit. Thin by design: the logic lives in kit/ (host), bench/, profile/ (container).

Options after `--` go to the command, e.g. `nox -s bench-hf -- --synthetic qwen3-8b-awq --runner local`.
"""
import functools

import nox

nox.needs_version = ">=2024.3"  # `requires=` (the tests session)
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["report"]

# On Ctrl-C nox would SIGTERM the kit 0.3 s after the SIGINT both got, cutting off the kit's own clean-up (the
# container stopped, the bench's report, the reports, its "interrupted" line). The kit bounds that itself.
KIT_SHUTDOWN_S = 120
# `python -m kit` runs from this checkout, so only the dependencies are installed (no wheel build per run).
PROJECT = nox.project.load_toml("pyproject.toml")["project"]
DEPS = PROJECT["dependencies"]
TEST_DEPS = DEPS + PROJECT["optional-dependencies"]["test"]


def _kit(session: nox.Session, command: str, tools: tuple[str, ...] = ()) -> None:
    session.install("-q", *DEPS, *tools)
    session.run("python", "-m", "kit", command, *session.posargs, interrupt_timeout=KIT_SHUTDOWN_S)


def _session(name: str, doc: str, body) -> None:
    """Register a session that runs body(session); `nox -l` lists its doc."""
    def run(session: nox.Session) -> None:
        body(session)
    run.__doc__ = doc
    nox.session(name=name)(run)


for _name, _command, _tools, _doc in (
    ("report", "report", (),
     "Re-render reports/week1.md and reports/week2.md (+ plots) from results/ and the published data."),
    ("bench-vllm", "bench-vllm", (), "Week-1 TTFT/TPOT with vLLM 0.12.0 (`-- --vllm 0.20`: 0.20.0), rows awq and "
                                     "awq_marlin (pinned image; --runner local too)."),
    ("bench-hf", "bench-hf", (), "Week-1 TTFT/TPOT with transformers 4.51.3 + autoawq 0.2.9 (pinned image; --runner "
                                 "local too)."),
    ("profile-t4", "profile", (),
     "Week-2 torch.profiler table of the transformers + autoawq path: cold, warm and decode step."),
    ("demo", "demo", (), "Whole pipeline on this CPU with a tiny synthetic checkpoint; writes only under demo/."),
    ("wheelhouse", "wheelhouse", ("pip",),
     "Download every file of images/STACK/*.lock for the lock's Python/platform (hashes checked) into wheelhouse/."),
    ("lock", "lock", ("uv",),
     "Regenerate images/*/requirements.lock from requirements.in with uv (hashed, dated, Python 3.12)."),
):
    _session(_name, _doc, functools.partial(_kit, command=_command, tools=_tools))


@nox.session(name="venv")
def venv(session: nox.Session) -> None:
    """Make .venv-hf/ (or `-- vllm`: .venv-vllm/) from the stack's hashed locks (`--wheelhouse DIR`: offline)."""
    if "--wheelhouse" not in session.posargs:  # offline: pip from the wheelhouse, no uv, no index
        session.install("-q", "uv")
    session.run("python", "-m", "kit", "venv", *session.posargs, interrupt_timeout=KIT_SHUTDOWN_S)


# Tests: one session per suite; pytest's own summary is each one's result, its exit code the session's.
# `nox -s tests-host -- -k locks`: options after `--` go to pytest. Policy (CI=true: a skip in host or docker
# fails; nothing collected fails) is pytest's own: tests/support/ci_policy.py and exit code 5.


def _pytest(session: nox.Session, suite: str) -> None:
    session.install("-q", *TEST_DEPS)
    session.run("python", "-m", "pytest", f"tests/{suite}", *session.posargs, interrupt_timeout=KIT_SHUTDOWN_S)


def _pytest_in_image(session: nox.Session, stack: str, suite: str) -> None:
    session.install("-q", *DEPS)
    session.run("python", "-m", "kit", "container-pytest", stack, "--", f"tests/{suite}", *session.posargs,
                interrupt_timeout=KIT_SHUTDOWN_S)


for _name, _stack, _suite, _doc in (  # stack None: in nox's venv, else inside that stack's image
    ("tests-host", None, "host", "tests/host in this venv: no torch, no Docker."),
    ("tests-docker", None, "docker", "tests/docker against the real Docker engine (builds or reuses the hf image)."),
    ("tests-container", "hf", "container", "tests/container inside the hf image (kit at /kit read-only, CPU); "
                                           "KIT_CA_BUNDLE for its build."),
    ("tests-vllm", "vllm", "vllm", "tests/vllm inside the vllm image (vLLM 0.12.0, CPU)."),
    ("tests-vllm-0.20", "vllm-0.20", "vllm", "tests/vllm again, inside the vllm-0.20 image (vLLM 0.20.0, CPU)."),
    ("tests-slurm", None, "slurm", "tests/slurm through the real single-node slurmctld that .ci/slurm-up starts (fake "
                                   "GPU types fakea, fakeb)."),
):
    _session(_name, _doc, functools.partial(_pytest_in_image, stack=_stack, suite=_suite) if _stack
             else functools.partial(_pytest, suite=_suite))


@nox.session(name="tests", python=False,
             requires=["tests-host", "tests-docker", "tests-container", "tests-vllm", "tests-vllm-0.20", "tests-slurm"])
def tests(session: nox.Session) -> None:
    """Every suite, in that order (each one runs even if an earlier one failed); fails if any failed."""
    session.log("every suite passed")
