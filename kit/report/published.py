"""The published study's numbers, kept as data in reports/published.json (seed text: reports/published-seed.txt)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field, ValidationError

from kit import KIT_ROOT
from core.engine_samples import Strict
from core.errors import KitError

PUBLISHED_PATH = KIT_ROOT / "reports" / "published.json"


class PublishedColumn(Strict, frozen=True):
    label: str
    stack: str
    model: str
    ttft_ms: float
    tpot_ms: float


class PublishedStack(Strict, frozen=True):
    name: str
    versions: list[tuple[str, str]]


class PublishedWeek1(Strict, frozen=True):
    device: str
    same_gpu_names: list[str] = Field(description="GPU names that count as the published GPU (after normalisation)")
    statistic: str
    workload: str
    columns: list[PublishedColumn]
    stacks: list[PublishedStack]

    def version(self, library: str) -> Optional[str]:
        """The published version of one library ("vllm" -> "0.12.0"), None when the study names none."""
        return next((v for s in self.stacks for name, v in s.versions if name == library), None)


class PublishedWeek2(Strict, frozen=True):
    device: str
    same_gpu_names: list[str]
    what: str
    table_lines: list[str] = Field(description="the profiler table, verbatim, one string per line")
    totals: list[str]
    top_ops_column: str
    top_ops: list[tuple[str, float]] = Field(description="(op, ms) by self device time, without CUPTI's 'Unrecognized'")

    @property
    def table(self) -> str:
        return "\n".join(self.table_lines)


class Published(Strict, frozen=True):
    about: str
    source: str
    week1: PublishedWeek1
    week2: PublishedWeek2


def load_published(path: Optional[Path] = None) -> Published:
    path = Path(path or PUBLISHED_PATH)
    restore = "Restore it with `git checkout -- reports/published.json`."
    try:
        return Published.model_validate_json(path.read_bytes())
    except OSError as e:
        raise KitError(f"{path}: the published study's data cannot be read ({e}). It is part of the kit. "
                       f"{restore}") from e
    except ValidationError as e:
        first = e.errors()[0]
        what = (f"is not valid JSON ({first['msg']})" if first["type"] == "json_invalid" else
                f"is malformed at field '{'.'.join(str(x) for x in first['loc'])}': {first['msg']}")
        raise KitError(f"{path}: the published study's data {what}. {restore}") from e


def is_same_gpu(reproduced_name: Optional[str], published_names: list[str]) -> bool:
    """'NVIDIA A100-SXM4-80GB' and 'a100-sxm4-80gb' are the same GPU; 'Tesla T4' and 'T4' too."""
    def normalised(name: str) -> str:
        return " ".join(name.split()).lower().removeprefix("nvidia ").removeprefix("tesla ")

    return bool(reproduced_name) and normalised(reproduced_name) in map(normalised, published_names)
