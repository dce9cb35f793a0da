"""`tunesmith compare`: the recipe keys that differ and the metrics side by side, on run directories written here."""

from __future__ import annotations

import json

import pytest
import yaml

from tunesmith.cli import main as cli_main
from tunesmith.report.compare import load_runs, metric_rows, recipe_differences
from tunesmith.errors import RunError


def write_run(path, *, lr=5e-5, batch_size=32, extra=None, accuracy=0.9, macro_f1=0.85, tfidf_f1=0.8):
    path.mkdir(parents=True)
    recipe = {"model": "minilm", "task": "classification",
              "data": {"train": "data/train.csv", "validation": {"split": 0.2, "stratify": True}},
              "train": {"epochs": 3, "lr": lr, "batch_size": batch_size, "early_stopping": {"metric": "macro_f1"}},
              "output": str(path), **(extra or {})}
    (path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    split = {"loss": 0.3, "accuracy": accuracy, "macro_f1": macro_f1, "n": 100}
    result = {"task": "classification", "model": "minilm",
              "best": {"metric": "macro_f1", "value": macro_f1, "step": 40},
              "stop_reason": "finished the budget of 60 steps (3 epochs)", "steps": 60, "epochs": 3.0,
              "validation": split, "baselines": {"validation": {
                  "majority": {"predicts": "ham", "accuracy": 0.86, "macro_f1": 0.46},
                  "tfidf": {"accuracy": 0.95, "macro_f1": tfidf_f1}}},
              "timing": {"total_s": 12.0, "train_s": 10.0, "train_samples_per_s": 50.0},
              "memory": {"peak_rss_mb": 900.0}}
    (path / "eval.json").write_text(json.dumps(result))
    records = [{"type": "train", "step": s, "loss": 1.0 / s, "lr": lr} for s in range(1, 61, 10)]
    records += [{"type": "eval", "split": "validation", "step": s, "macro_f1": macro_f1 - 0.1 + s / 600}
                for s in (20, 40, 60)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def runs(tmp_path):
    return [write_run(tmp_path / "a"), write_run(tmp_path / "b", lr=3e-5, macro_f1=0.9, accuracy=0.93),
            write_run(tmp_path / "c", batch_size=16, extra={"baselines": {"scratch": True}}, macro_f1=0.8)]


def test_recipe_differences_are_exactly_the_changed_keys(runs):
    loaded = load_runs(runs)
    rows = recipe_differences([run.recipe for run in loaded])
    assert [row.label for row in rows] == ["train.lr", "train.batch_size", "baselines.scratch"]
    assert rows[0].values == [5e-5, 3e-5, 5e-5]
    assert rows[2].values == ["—", "—", True]  # absent from two runs
    assert recipe_differences([loaded[0].recipe, loaded[0].recipe]) == []  # output is never a difference


def test_metrics_side_by_side_mark_the_best(runs):
    rows = {row.label: row for row in metric_rows(load_runs(runs))}
    assert rows["validation macro_f1"].values == [0.85, 0.9, 0.8]
    assert rows["validation macro_f1"].best_index() == {1}
    assert rows["validation loss"].best_index() == set()  # all equal: nothing to mark
    assert rows["validation baseline tfidf macro_f1"].values == [0.8, 0.8, 0.8]
    assert rows["best step"].values == [40, 40, 40] and rows["peak memory (MB RSS)"].values == [900.0] * 3


def test_compare_command_prints_tables_and_writes_html(runs, tmp_path, capsys):
    page = tmp_path / "out" / "compare.html"
    assert cli_main(["compare", *map(str, runs), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    for text in ("recipe differences", "train.lr", "train.batch_size", "baselines.scratch", "validation macro_f1",
                 "0.9000", "3e-05"):
        assert text in out, text
    assert "output" not in out.split("metrics")[0]
    html = page.read_text()
    assert '<section id="recipe-differences">' in html and "train.batch_size" in html
    assert html.count('<img src="data:image/png;base64,') == 2  # train loss and validation macro_f1, per run


def test_compare_needs_finished_runs(runs, tmp_path, capsys):
    with pytest.raises(RunError, match="at least two"):
        load_runs(runs[:1])
    (tmp_path / "empty").mkdir()
    assert cli_main(["compare", str(runs[0]), str(tmp_path / "empty")]) == 2
    assert "no eval.json" in capsys.readouterr().err
