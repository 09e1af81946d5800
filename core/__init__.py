"""The neutral core the host side (kit/) and the container side (bench/, profile/) share; its modules are listed in
the README's layout table. Standard library and pydantic only: no torch, no docker. kit/ and bench/, profile/ import
this package and never each other (tests/host/test_layout.py).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
