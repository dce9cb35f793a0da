"""Two finished runs compared record by record and weight by weight (tests/train: several processes, sharding)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.torch import load_file


def records(run_dir: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["type"] == kind]


def max_weight_difference(a_path: Path, b_path: Path) -> float:
    a, b = load_file(a_path), load_file(b_path)
    assert a.keys() == b.keys(), a_path
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def assert_same_run(ours: Path, theirs: Path, steps: int, atol: float) -> None:
    """The same logged steps, losses and rates, evaluations and accuracies, last-step and best weights."""
    a, b = records(ours, "train"), records(theirs, "train")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, steps + 1))
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=0, atol=atol)
    np.testing.assert_allclose([r["lr"] for r in a], [r["lr"] for r in b], rtol=0, atol=1e-12)
    a, b = records(ours, "eval"), records(theirs, "eval")
    assert [(r["step"], r.get("final", False)) for r in a] == [(r["step"], r.get("final", False)) for r in b]
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=0, atol=atol)
    assert [r["accuracy"] for r in a] == [r["accuracy"] for r in b]
    for weights in (f"checkpoints/step-{steps:08d}/model.safetensors", "model/model.safetensors"):
        worst = max_weight_difference(ours / weights, theirs / weights)
        assert worst <= atol, f"{weights}: weights differ by {worst}"
