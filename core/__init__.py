"""The neutral core shared by the host side (kit/) and the container side (bench/, profile/); docs/design.md maps it."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
