"""Report assembly (host side, no torch): results/*.json + reports/published.json -> reports/, a pure function of
its inputs. Everything is rendered in memory first, then staged and renamed into place; a broken results file stops
everything (KitError) before anything is written. Fixed prose: kit/report/text.md.
"""
from __future__ import annotations

import hashlib
import io
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Optional

from core.errors import KitError
from core.files import atomic_path
from kit.report.common import Inputs, _stderr_note, load_inputs
from kit.report.published import Published, load_published

OUTPUTS = ("week1.md", "week1.png", "week2.md", "week2.png")

__all__ = ["OUTPUTS", "PLOT_KEY", "assemble_reports", "render_reports", "write_all", "load_inputs", "load_published",
           "plot", "png_text_chunks"]


# Plots. Drawing the two PNGs (and importing matplotlib for it) costs about 2.4 s of a 2.9 s report on 2 cores, a
# reuse 0.1 s (`python tools/bench_timing.py`). Each PNG carries, in a tEXt chunk, a hash of exactly what it was drawn
# from (the plot data, the source of kit/report/plots.py, the matplotlib version); when the PNG already in the
# reports folder has the key the new one would have, its bytes are reused: the same inputs give the same bytes.

PLOT_KEY = "kit-plot-key"


def png_text_chunks(data: bytes) -> dict[str, str]:
    """The text chunks of a PNG ({} for anything Pillow cannot read as one, a broken checksum included)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as png:
            return dict(png.text)
    except (OSError, SyntaxError, ValueError):
        return {}


def plot(name: str, inputs: Inputs, published: Published, previous: Optional[Path] = None) -> bytes:
    """reports/<name>.png ("week1" or "week2"): drawn by plots.<name>_png from kit.report.<name>.plot_args, or the
    bytes of previous/<name>.png when they were drawn from the same args."""
    from importlib import import_module
    from importlib.metadata import PackageNotFoundError, version

    args = import_module(f"kit.report.{name}").plot_args(inputs, published)
    try:
        mpl = version("matplotlib")
    except PackageNotFoundError:
        mpl = "unknown"
    code = hashlib.sha256((Path(__file__).parent / "plots.py").read_bytes()).hexdigest()
    key = hashlib.sha256(json.dumps([name, args, code, mpl], sort_keys=True, ensure_ascii=True).encode()).hexdigest()
    try:
        cached = (Path(previous) / f"{name}.png").read_bytes() if previous is not None else b""
    except OSError:  # no previous PNG (or an unreadable one): draw it
        cached = b""
    if cached and png_text_chunks(cached).get(PLOT_KEY) == key:
        return cached
    from kit.report import plots

    return getattr(plots, f"{name}_png")(*args, {PLOT_KEY: key})


def render_reports(inputs: Inputs, published: Published, previous: Optional[Path] = None) -> dict[str, bytes]:
    """All report files in memory, {name: bytes} in OUTPUTS' order; a PNG in `previous` with the same key is reused."""
    from importlib import import_module

    files = {}
    for name in ("week1", "week2"):
        render = getattr(import_module(f"kit.report.{name}"), f"render_{name}")
        files[f"{name}.md"] = render(inputs, published).encode("utf-8")
        files[f"{name}.png"] = plot(name, inputs, published, previous)
    return files


def write_all(reports_dir: Path, files: dict[str, bytes]) -> list[Path]:
    """Stage every file as a temp file in reports_dir, then rename them all into place (a failure while staging
    removes the temp files and leaves the old reports untouched)."""
    reports_dir = Path(reports_dir)
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KitError(f"{reports_dir}: cannot create the reports folder ({e}). Pass --reports-dir with a "
                       "writable folder.") from e
    for target in (reports_dir / name for name in files):
        if target.exists() and not target.is_file():
            raise KitError(f"{target}: exists and is not a regular file, so the report cannot replace it. Move it "
                           "away and run again; nothing was written.")
    try:
        with ExitStack() as staged:  # every file staged before the first rename; an error removes all the temp files
            for name, data in files.items():
                staged.enter_context(atomic_path(reports_dir / name, mode=0o644)).write_bytes(data)
    except OSError as e:
        raise KitError(f"{reports_dir}: cannot write the reports ({e}). Nothing was changed there unless the error "
                       "came while renaming the files into place; check free space and permissions.") from e
    return [reports_dir / name for name in files]


def assemble_reports(results_dir: Path, reports_dir: Path, *, published_path: Optional[Path] = None,
                     note: Callable[[str], None] = _stderr_note) -> list[Path]:
    """Render reports_dir/{week1,week2}.{md,png} from results_dir and the published data; return the paths written.
    A broken results file raises KitError before anything is written; non-result files are skipped with a `note`."""
    files = render_reports(load_inputs(Path(results_dir), note=note), load_published(published_path),
                           previous=Path(reports_dir))
    return write_all(Path(reports_dir), files)
