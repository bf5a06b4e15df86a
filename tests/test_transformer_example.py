"""examples/transformer_reverse.py runs on this backend (shortened; the full run is
AT04's: >= 95 % token accuracy, docs/sequence.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transformer_reverse.py"


def test_transformer_reverse_example_learns(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("transformer_reverse", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "run.json"
    result = module.main(["--steps", "40", "--quiet", "--json", str(out)])
    assert out.is_file() and len(result["loss"]) == 40
    assert sum(result["loss"][-10:]) / 10 < 0.8 * result["loss"][0]  # ln 13 = 2.56 at the start
    assert 0.0 <= result["token_accuracy"] <= 1.0 and 0.0 <= result["bleu"] <= 1.0
