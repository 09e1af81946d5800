"""Helpers of the tests that edit a result file and expect load_result to refuse it in one paragraph."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.results import ResultFileError, load_result


def write_json(folder: Path, data: dict, name: str = "edited.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def refused(path: Path, *words: str) -> str:
    """load_result refuses the file in one paragraph naming it as self-contradicting, and each of `words`."""
    with pytest.raises(ResultFileError) as info:
        load_result(path)
    message = str(info.value)
    assert str(path) in message and "contradicts itself" in message and "\n" not in message
    for word in words:
        assert word in message, (word, message)
    return message
