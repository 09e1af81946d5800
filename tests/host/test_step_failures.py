"""Several steps failing: each cause is explained once (issue 17 item 5: a host without a GPU printed the
"No GPU visible" paragraph once per step and once more in the summary)."""
from __future__ import annotations

import pytest

from core.errors import KitError
from kit import cli
from kit.runners import Step

NO_GPU = "No GPU visible: nvidia-smi is not on PATH. Install the driver.\n\nA second paragraph."


def _steps(n: int) -> list[Step]:
    return [Step("vllm-0.20", ("-m", "bench"), None, f"row {i}") for i in range(n)]  # type: ignore[arg-type]


def test_a_host_wide_cause_is_explained_once(monkeypatch, capsys):
    def no_gpu(step, opts):
        raise KitError(NO_GPU)

    monkeypatch.setattr(cli, "run_step", no_gpu)
    with pytest.raises(KitError) as e:
        cli._run_here("bench-vllm", _steps(2), None)  # type: ignore[arg-type]
    printed = capsys.readouterr().err + str(e.value)
    assert printed.count("No GPU visible") == 1 + 1  # the paragraph once, its first sentence in the summary
    assert printed.count("A second paragraph") == 1
    assert str(e.value).startswith("2 of 2 steps failed; each reason is explained above: all: No GPU visible")


def test_distinct_causes_are_each_named_with_their_steps(monkeypatch, capsys):
    def by_row(step, opts):
        if step.description != "row 1":
            raise KitError(f"{step.description} broke. Details.")

    monkeypatch.setattr(cli, "run_step", by_row)
    with pytest.raises(KitError) as e:
        cli._run_here("bench-vllm", _steps(3), None)  # type: ignore[arg-type]
    assert str(e.value) == ("2 of 3 steps failed (the others' results were written); each reason is explained above: "
                            "row 0: row 0 broke. | row 2: row 2 broke.")
