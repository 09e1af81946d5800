"""Convert results files of schema version 1 to version 2, in place (docs/results-format.md, "Versioned").

    python tools/migrate_results.py [FILE or FOLDER ...]     (default: results/ and docs/runs/ of this checkout)

A version 1 file's stored engine intervals must equal what version 2 computes from its timestamps; they and
samples.cuda_event_tpot_ms are dropped and the file is rewritten through core.results.write_result (every check of
version 2). A file that fails is refused with one paragraph and left untouched; a second run changes nothing.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Optional

KIT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT_ROOT))

from core import engine_samples as es  # noqa: E402
from core.results import (SCHEMA_VERSION, NotAResultFile, ResultFileError, read_result_data,  # noqa: E402
                          validate_result, write_result)

DEFAULT_PLACES = (KIT_ROOT / "results", KIT_ROOT / "docs" / "runs")
# Version 1's derived engine fields and how version 2 computes each on read.
V1_DERIVED = {"queued_to_scheduled_ms": es.queued_to_scheduled_ms,
              "scheduled_to_first_token_ms": es.scheduled_to_first_token_ms,
              "queued_to_first_token_ms": es.queued_to_first_token_ms,
              "first_to_last_token_ms": es.first_to_last_token_ms, "tpot_ms": es.engine_tpot_ms}
# Version 1's clock note described the stored *_ms values; a version 2 file gets the note that matches it.
V1_ENGINE_CLOCK_NOTE = es.ENGINE_CLOCK_NOTE.replace(
    "Intervals are computed on read, within one clock only.",
    "The *_ms values are differences within the engine-core clock only.")


def _agrees(stored: Any, recomputed: Optional[float]) -> bool:
    # The same formula on the same floats gives the same float; 1e-9 relative (~1 ns in a second) is for rounding.
    if recomputed is None:
        return stored is None
    return isinstance(stored, (int, float)) and math.isclose(stored, recomputed, rel_tol=1e-9, abs_tol=1e-9)


def migrate_file(path: Path) -> str:
    """Migrate one file in place; returns what happened (raises ResultFileError: one paragraph, nothing written)."""
    try:
        data = read_result_data(path)
    except NotAResultFile:
        return "not a kit result, skipped"
    version, samples, v1_engine = data.get("schema_version"), data.get("samples"), None
    if version == SCHEMA_VERSION and "cuda_event_tpot_ms" not in (samples or {}):
        return f"already version {SCHEMA_VERSION}, left alone"
    if version not in (1, SCHEMA_VERSION):
        raise ResultFileError(f"{path}: field 'schema_version' is {version!r}, but this script converts version 1 "
                              f"to {SCHEMA_VERSION}. Nothing was written; render it with the kit version that wrote "
                              "it.")
    if data.get("kind") == "bench" and isinstance(samples, dict):
        samples = {k: v for k, v in samples.items() if k != "cuda_event_tpot_ms"}
        if version == 1 and (v1_engine := samples.get("engine")) is not None:
            clock = v1_engine.get("clock")
            raw = [None if s is None else {k: v for k, v in s.items() if k not in V1_DERIVED}
                   for s in v1_engine.get("iterations") or []]
            samples["engine"] = dict(v1_engine, iterations=raw,
                                     clock=es.ENGINE_CLOCK_NOTE if clock == V1_ENGINE_CLOCK_NOTE else clock)
        data = dict(data, samples=samples)
    result = validate_result(path, dict(data, schema_version=SCHEMA_VERSION))
    for i, (snap, e) in enumerate(zip(v1_engine["iterations"], result.samples.engine.iterations) if v1_engine else ()):
        for name, derive in V1_DERIVED.items():
            if e is not None and not _agrees(snap.get(name), recomputed := derive(e)):
                raise ResultFileError(
                    f"{path}: field 'samples.engine.iterations[{i}].{name}' is {snap.get(name)!r}, but its own "
                    f"timestamps give {recomputed!r}: the stored interval and the timestamps disagree, and version "
                    "2 would keep only the timestamps, so one of them was edited or written by a bug. Nothing was "
                    "written; re-run the session that produced the file, or remove it.")
    write_result(result, path)
    return f"migrated to version {SCHEMA_VERSION}"


def main(argv: list[str]) -> int:
    places = [Path(a) for a in argv] or [p for p in DEFAULT_PLACES if p.exists()]
    if missing := [str(p) for p in places if not p.exists()]:
        print(f"migrate_results: {', '.join(missing)}: no such file or folder. Name results files or folders "
              "holding them.", file=sys.stderr)
        return 2
    refused = 0
    for path in [f for p in places for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p])]:
        try:
            print(f"{path}: {migrate_file(path)}")
        except ResultFileError as e:
            refused += 1
            print(str(e), file=sys.stderr)
    if refused:
        print(f"migrate_results: {refused} file(s) refused (above) and left untouched; the others were converted "
              "or left alone.", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
