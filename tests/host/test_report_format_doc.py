"""docs/results-format.md documents every model and every field of core/results.py (and core/engine_samples.py)."""
from __future__ import annotations

import inspect
import re

from pydantic import BaseModel

from kit import KIT_ROOT
from core import engine_samples, results

DOC = (KIT_ROOT / "docs" / "results-format.md").read_text(encoding="utf-8")


def _models() -> dict[str, type[BaseModel]]:
    return {name: obj for module in (results, engine_samples) for name, obj in vars(module).items()
            if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__
            and not name.startswith("_") and obj is not engine_samples.Strict}  # Strict: the fieldless base


def _sections() -> dict[str, str]:
    parts = re.split(r"^### `(\w+)`\s*$", DOC, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_model_and_field_is_documented():
    models, sections = _models(), _sections()
    assert {"BenchResult", "ProfileResult", "Stats", "Provenance", "Roofline"} <= set(models)
    missing = []
    for name, model in sorted(models.items()):
        if name not in sections:
            missing.append(f"section ### `{name}`")
            continue
        for field in model.model_fields:
            if f"| `{field}` |" not in sections[name]:
                missing.append(f"{name}.{field}")
    assert not missing, "docs/results-format.md lacks: " + ", ".join(missing)


def test_documented_fields_exist():
    models, sections = _models(), _sections()
    stale = []
    for name, text in sections.items():
        assert name in models, f"docs/results-format.md documents `{name}`, which core/results.py does not define"
        for field in re.findall(r"^\| `(\w+)` \|", text, flags=re.M):
            if field not in models[name].model_fields:
                stale.append(f"{name}.{field}")
    assert not stale, "documented but not in core/results.py: " + ", ".join(stale)


def test_documented_version_is_the_code_version():
    assert results.SCHEMA_VERSION == 2 and "now `2`" in DOC
    assert f'"{results.FORMAT_NAME}"' in DOC
