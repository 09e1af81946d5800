"""Host side of the AWQ reproduction kit (no torch here: see tests/host/test_no_torch.py)."""
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parent.parent
