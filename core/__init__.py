"""The neutral core: what the host side (kit/) and the container side (bench/, profile/) share.

- core.errors    the one error type (one actionable paragraph, no traceback)
- core.results   the result schema (pydantic), written by the container side, read by the reports
- core.locks     versions, read from the stacks' hashed locks (images/<stack>/requirements.lock)
- core.workload  the typed workload spec: parsed and checked once on the host, handed to the container as data
- core.rules     the checks every step applies (AWQ checkpoint, lengths, CPU refusal, compute capability)
- core.git       the kit checkout's commit, for provenance

Standard library and pydantic only: no torch, no docker. kit/ and bench/, profile/ import this package and never
each other (tests/host/test_layout.py).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
