"""The chapter 6–8 example, shortened: examples/lenet_digits.py trains on this backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lenet_digits.py"


def test_lenet_digits_example_trains(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the [data] extra is not installed")
    spec = importlib.util.spec_from_file_location("lenet_digits", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "run.json"
    result = module.main(["--epochs", "2", "--limit", "384", "--quiet", "--json", str(out)])
    assert out.is_file()
    assert len(result["loss"]) == 2 and result["loss"][1] < result["loss"][0]
    assert result["loss"][-1] < 2.0  # chance: ln 10 = 2.30; the full run ends at 0.056
    # Two short epochs leave BatchNorm's running statistics (predict mode) behind, so the
    # test accuracy here is only a valid fraction; the full run reaches 0.987 (docs/cnn.md).
    assert len(result["val_accuracy"]) == 2 and 0.0 <= result["test_accuracy"] <= 1.0


def test_lenet_digits_counts_epochs_once_and_shows_the_rate_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn", reason="the [data] extra is not installed")
    spec = importlib.util.spec_from_file_location("lenet_digits", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--epochs", "3", "--limit", "192", "--lr", "0.5"])
    lines = capsys.readouterr().out.splitlines()
    # one counter over the whole run; the drop is a line of its own, before the epoch it affects
    heads = [ln.split("  ")[0] for ln in lines]
    assert heads == [
        "epoch 1/3",
        "epoch 2/3",
        "learning rate 0.5 -> 0.05 for the last 1 epoch(s), so that BatchNorm's running "
        "statistics catch up",
        "epoch 3/3",
        lines[-1].split("  ")[0],
    ]
    assert lines[-1].startswith(f"{result['backend']}: test accuracy")
    assert result["learning_rate"] == [0.5, 0.5, 0.05]
    assert [" lr 0.5 " in lines[0], " lr 0.5 " in lines[1], " lr 0.05 " in lines[3]] == [True] * 3
    for line, value in zip([lines[0], lines[1], lines[3]], result["loss"]):
        assert f"loss {value:.4f}" in line

CHAR_LM = Path(__file__).resolve().parents[1] / "examples" / "char_lm.py"


def test_char_lm_example_learns(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("char_lm", CHAR_LM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "run.json"
    result = module.main(["--epochs", "3", "--repeat", "4", "--hiddens", "48", "--eager",
                          "--quiet", "--json", str(out)])
    assert out.is_file()
    ppl = result["perplexity"]
    assert len(ppl) == 3 and ppl[-1] < ppl[0] < 40, ppl  # 28 characters: chance is 28
    assert result["sample"].startswith("the time traveller")
    text = module.read_text(module.TEXT)
    assert text.startswith("the time traveller for so it will be") and text == text.lower()
