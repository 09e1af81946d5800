"""Convert results files of schema version 1 to version 2, in place.

    python tools/migrate_results.py [FILE or FOLDER ...]     (default: results/ and docs/runs/ of this checkout)

Version 2 stores vLLM's engine timestamps raw (core/engine_samples.py) and derives every interval on read; version 1
stored five intervals beside each iteration's timestamps (queued_to_scheduled_ms, scheduled_to_first_token_ms,
queued_to_first_token_ms, first_to_last_token_ms, tpot_ms). For each version 1 file this script recomputes those
intervals from the timestamps with the functions the report uses, checks that they equal the stored ones (float
rounding aside), drops them, also drops samples.cuda_event_tpot_ms (a CUDA-event TPOT that agreed with the host
clock by construction, so it measured nothing; version 2 has no such field), sets schema_version to 2 and writes the
file atomically through core.results.write_result, which also runs every check a version 2 file must pass. A file
whose stored intervals disagree with its timestamps, or that fails a check, is refused with one paragraph and left
untouched. A version 2 file is left alone, unless it was written before cuda_event_tpot_ms was removed: then that
field alone is dropped. Running it twice changes nothing. Standard library and the kit's core/ only.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Optional

KIT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT_ROOT))

from pydantic import ValidationError  # noqa: E402  (core's one dependency)

from core import engine_samples as es  # noqa: E402
from core.results import (  # noqa: E402
    _BY_KIND,
    FORMAT_NAME,
    SCHEMA_VERSION,
    ResultFileError,
    _describe_validation_error,
    write_result,
)

DEFAULT_PLACES = (KIT_ROOT / "results", KIT_ROOT / "docs" / "runs")

# Version 1's derived engine fields and how version 2 computes each on read.
V1_DERIVED: dict[str, Callable[[es.EngineTimestamps], Optional[float]]] = {
    "queued_to_scheduled_ms": es.queued_to_scheduled_ms,
    "scheduled_to_first_token_ms": es.scheduled_to_first_token_ms,
    "queued_to_first_token_ms": es.queued_to_first_token_ms,
    "first_to_last_token_ms": es.first_to_last_token_ms,
    "tpot_ms": es.engine_tpot_ms,
}
# The same formula on the same floats gives the same float; the tolerance is for rounding only (1e-9 relative is
# ~1 ns in a second), far below any edit a person would make.
_REL_TOL, _ABS_TOL_MS = 1e-9, 1e-9
# Version 1's clock note described the stored *_ms values; a version 2 file gets the note that matches it.
V1_ENGINE_CLOCK_NOTE = (
    "vLLM RequestOutput.metrics (RequestStateStats) of each measured request. queued_ts, scheduled_ts, "
    "first_token_ts and last_token_ts are time.monotonic() seconds read in the engine-core process; "
    "arrival_time is time.time() in the frontend process and first_token_latency a frontend wall-clock "
    "interval in seconds. The *_ms values are differences within the engine-core clock only. None of "
    "these are comparable with the client-side samples (time.perf_counter in the benchmark process)."
)


class Refused(Exception):
    """One paragraph: the file, the field, what was expected; nothing was written."""


def _agrees(stored: Any, recomputed: Optional[float]) -> bool:
    if stored is None or recomputed is None:
        return stored is None and recomputed is None
    return isinstance(stored, (int, float)) and math.isclose(stored, recomputed, rel_tol=_REL_TOL,
                                                              abs_tol=_ABS_TOL_MS)


def _raw_timestamps(path: Path, i: int, snap: dict[str, Any]) -> es.EngineTimestamps:
    raw = {k: v for k, v in snap.items() if k not in V1_DERIVED}
    try:
        return es.EngineTimestamps.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise Refused(f"{path}: field 'samples.engine.iterations[{i}].{field}': {first['msg']} (got "
                      f"{first.get('input')!r:.80}), so its engine intervals cannot be recomputed. Nothing was "
                      "written; re-run the session that produced the file, or remove it.") from e


def _migrated_iteration(path: Path, i: int, snap: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The raw fields of one v1 snapshot, after checking its stored intervals against them."""
    if snap is None:
        return None
    stamps = _raw_timestamps(path, i, snap)
    for name, derive in V1_DERIVED.items():
        stored, recomputed = snap.get(name), derive(stamps)
        if not _agrees(stored, recomputed):
            raise Refused(
                f"{path}: field 'samples.engine.iterations[{i}].{name}' is {stored!r}, but its own timestamps give "
                f"{recomputed!r}: the stored interval and the timestamps disagree, and version 2 would keep only the "
                "timestamps, so one of them was edited or written by a bug. Nothing was written; re-run the session "
                "that produced the file, or remove it.")
    return {k: v for k, v in snap.items() if k not in V1_DERIVED}


def _migrated_engine(path: Path, engine: dict[str, Any]) -> dict[str, Any]:
    iterations = [_migrated_iteration(path, i, snap) for i, snap in enumerate(engine.get("iterations") or [])]
    clock = engine.get("clock")
    return {**engine, "clock": es.ENGINE_CLOCK_NOTE if clock == V1_ENGINE_CLOCK_NOTE else clock,
            "iterations": iterations}


def _without_cuda_events(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("kind") != "bench" or not isinstance(data.get("samples"), dict):
        return data
    return dict(data, samples={k: v for k, v in data["samples"].items() if k != "cuda_event_tpot_ms"})


def migrated(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A version 1 result as version 2 data (raises Refused)."""
    data = _without_cuda_events(dict(data, schema_version=SCHEMA_VERSION))
    engine = (data.get("samples") or {}).get("engine") if data.get("kind") == "bench" else None
    if engine is not None:
        data["samples"] = dict(data["samples"], engine=_migrated_engine(path, engine))
    return data


def migrate_file(path: Path) -> str:
    """Migrate one file in place; returns what happened (raises Refused)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Refused(f"{path}: cannot be read as JSON ({e}). Nothing was written; fix or remove the file.") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        return "not a kit result, skipped"
    version = data.get("schema_version")
    stale_v2 = version == SCHEMA_VERSION and "cuda_event_tpot_ms" in (data.get("samples") or {})
    if version == SCHEMA_VERSION and not stale_v2:
        return f"already version {SCHEMA_VERSION}, left alone"
    if version != 1 and not stale_v2:
        raise Refused(f"{path}: field 'schema_version' is {version!r}, but this script converts version 1 to "
                      f"{SCHEMA_VERSION}. Nothing was written; render it with the kit version that wrote it.")
    model = _BY_KIND.get(data.get("kind"))
    if model is None:
        raise Refused(f"{path}: field 'kind' is {data.get('kind')!r}; expected one of {sorted(_BY_KIND)}. Nothing "
                      "was written.")
    try:
        # A version 2 file written before cuda_event_tpot_ms was removed loses that field only.
        result = model.model_validate(_without_cuda_events(data) if stale_v2 else migrated(path, data))
    except ValidationError as e:
        raise Refused(_describe_validation_error(path, e) + " Nothing was written.") from e
    try:
        write_result(result, path)
    except ResultFileError as e:
        raise Refused(str(e)) from e
    return f"migrated to version {SCHEMA_VERSION}"


def result_files(places: list[Path]) -> list[Path]:
    files: list[Path] = []
    for place in places:
        files += sorted(place.rglob("*.json")) if place.is_dir() else [place]
    return files


def main(argv: list[str]) -> int:
    places = [Path(a) for a in argv] or [p for p in DEFAULT_PLACES if p.exists()]
    missing = [str(p) for p in places if not p.exists()]
    if missing:
        print(f"migrate_results: {', '.join(missing)}: no such file or folder. Name results files or folders "
              "holding them.", file=sys.stderr)
        return 2
    refused = 0
    for path in result_files(places):
        try:
            print(f"{path}: {migrate_file(path)}")
        except Refused as e:
            refused += 1
            print(str(e), file=sys.stderr)
    if refused:
        print(f"migrate_results: {refused} file(s) refused (above); the others were converted or left alone.",
              file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
