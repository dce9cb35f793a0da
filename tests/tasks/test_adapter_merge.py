"""`tunesmith merge`, on tiny random models: one merged body and each task's own head are written; the merged
body is PEFT's combination of the sources with their weights (checked against the layers' deltas); each task
is re-evaluated on its own validation set, and merge.json's numbers are those `tunesmith evaluate` gives on the
written task directories; --max-drop refuses a merge that costs a task more; bad combinations are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from adapter_helpers import TEXTS, adapter_tensors, alone, bitwise_equal, lora_delta, train_lora
from tunesmith.cli import main
from tunesmith.errors import RunError
from tunesmith.recipes.adapters import SwitchedRuns
from tunesmith.recipes.merge import MergeRefused, merge_runs

LAYER = "base_model.model.bert.encoder.layer.1.attention.self.value"


@pytest.fixture(scope="module")
def runs(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge")
    return {name: train_lora(tiny_bert_dir, root, name) for name in ("sent", "topic")}


@pytest.fixture(scope="module")
def merged(runs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("merged") / "out"
    report = merge_runs([runs["sent"], runs["topic"]], output=out, combination="cat", weights=[0.7, 0.3],
                        echo=lambda *a: None)
    return out, report


def is_head(key: str) -> bool:
    return key.startswith("base_model.model.classifier.")


def test_one_merged_body_and_each_tasks_own_head(runs, merged):
    out, report = merged
    a, b = adapter_tensors(out / "tasks" / "sent"), adapter_tensors(out / "tasks" / "topic")
    body_a = {k: v for k, v in a.items() if not is_head(k)}
    body_b = {k: v for k, v in b.items() if not is_head(k)}
    assert body_a.keys() == body_b.keys() and all(torch.equal(body_a[k], body_b[k]) for k in body_a)
    for name, state in (("sent", a), ("topic", b)):
        source = adapter_tensors(runs[name])
        heads = {k for k in state if is_head(k)}
        assert heads == {k for k in source if is_head(k)} == {"base_model.model.classifier.weight",
                                                              "base_model.model.classifier.bias"}
        assert all(torch.equal(state[k], source[k]) for k in heads)  # the task's own trained head
    assert a["base_model.model.classifier.weight"].shape[0] == 2 and b["base_model.model.classifier.weight"].shape[0] == 3
    config = json.loads((out / "tasks" / "topic" / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == report["rank"] == 8 and config["task_type"] == "SEQ_CLS"  # cat: the ranks add up
    assert json.loads((out / "merge.json").read_text())["tasks"].keys() == {"sent", "topic"}


def test_the_merged_body_is_the_weighted_sum_of_the_sources_deltas(runs, merged):
    """combination cat is exact: the merged B @ A (scale 1) is 0.7 * delta(sent) + 0.3 * delta(topic)."""
    out, _ = merged
    state = adapter_tensors(out / "tasks" / "sent")
    expected = 0.7 * lora_delta(adapter_tensors(runs["sent"]), LAYER, 16 / 4) + \
        0.3 * lora_delta(adapter_tensors(runs["topic"]), LAYER, 16 / 4)
    assert expected.abs().max() > 1e-4  # the sources' adapters moved: the comparison means something
    torch.testing.assert_close(lora_delta(state, LAYER, 1.0), expected, atol=1e-6, rtol=1e-5)


def test_merge_json_holds_what_evaluate_gives_on_the_task_directories(runs, merged, tmp_path, capsys):
    out, report = merged
    for name, run in runs.items():
        row = report["tasks"][name]
        data = run.parent / f"{name}-data" / "validation.csv"
        assert row["examples"] == 24 and row["metric"] == "loss"
        source_eval = json.loads((run / "eval.json").read_text())["validation"]
        assert row["source_metrics"]["accuracy"] == source_eval["accuracy"]
        assert row["source_metrics"]["loss"] == pytest.approx(source_eval["loss"], abs=1e-5)
        metrics = tmp_path / f"{name}.json"
        assert main(["evaluate", str(out / "tasks" / name), "--data", str(data), "--output", str(metrics)]) == 0
        again = json.loads(metrics.read_text())  # model/: the merged adapter merged into the base
        assert again["accuracy"] == row["merged_metrics"]["accuracy"]
        assert again["loss"] == pytest.approx(row["merged_metrics"]["loss"], abs=1e-5)
        assert row["delta"]["loss"] == pytest.approx(row["merged_metrics"]["loss"] - row["source_metrics"]["loss"],
                                                     abs=1e-6)
    assert any(abs(row["delta"]["loss"]) > 1e-4 for row in report["tasks"].values())  # merging changed something
    capsys.readouterr()


def test_merged_task_directories_switch_on_one_base(merged):
    out, _ = merged
    frame = SwitchedRuns([out / "tasks" / "sent", out / "tasks" / "topic"]).predict_texts(TEXTS)
    for name in ("sent", "topic"):
        for column, values in alone(out / "tasks" / name).items():
            assert bitwise_equal(frame[f"{name}.{column}"].to_numpy(), np.asarray(values))


def test_weights_one_and_zero_give_back_the_first_adapter(runs, tmp_path):
    report = merge_runs([runs["sent"], runs["topic"]], output=tmp_path / "out", combination="svd", weights=[1, 0],
                        echo=lambda *a: None)
    row = report["tasks"]["sent"]  # svd at the sources' rank reproduces a rank-4 delta
    assert row["prediction_agreement"] == 1.0 and row["max_abs_logit_diff"] < 1e-4
    assert row["merged_metrics"]["loss"] == pytest.approx(row["source_metrics"]["loss"], abs=1e-5)


def test_max_drop_refuses_a_merge_that_costs_a_task_more(runs, merged, tmp_path, capsys):
    _, report = merged
    worst = max(report["tasks"], key=lambda n: report["tasks"][n]["drop"])
    drop = report["tasks"][worst]["drop"]
    assert drop > 0  # merging made at least one task's validation loss worse
    out = tmp_path / "out"
    args = ["merge", str(runs["sent"]), str(runs["topic"]), "--combination", "cat", "--weights", "0.7,0.3",
            "--output", str(out)]
    assert main(args + ["--max-drop", f"{drop / 2:.8f}"]) == 2
    err = capsys.readouterr().err
    assert f"merge refused: {worst}'s validation loss drops by {drop:.4f}" in err and "nothing written" in err
    assert not out.exists() and json.loads((tmp_path / "out.rejected.json").read_text())["passed"] is False
    assert main(args + ["--max-drop", f"{drop + 1e-4:.8f}"]) == 0
    assert json.loads((out / "merge.json").read_text())["passed"] is True


def edited_copy(run: Path, where: Path, **config) -> Path:
    shutil.copytree(run, where)
    path = where / "adapter" / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return where


@pytest.mark.parametrize("options, message", [
    ({"combination": "ties"}, r"--combination ties needs --density, the share of each adapter's delta kept"),
    ({"combination": "svd", "density": 0.5}, r"--density goes with the combinations .* not svd"),
    ({"weights": [1.0]}, r"--weights: 1 weights for 2 runs"),
    ({"weights": [0.0, 0.0]}, r"give finite numbers, not all zero"),
])
def test_bad_merge_options_are_refused(runs, tmp_path, options, message):
    with pytest.raises(RunError, match=message):
        merge_runs([runs["sent"], runs["topic"]], output=tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_dora_other_ranks_and_a_foreign_output_are_refused(runs, tmp_path):
    dora = edited_copy(runs["topic"], tmp_path / "dora", use_dora=True)
    with pytest.raises(RunError, match=r"is a DoRA run: merging DoRA adapters is not supported"):
        merge_runs([runs["sent"], dora], output=tmp_path / "out")
    rank8 = edited_copy(runs["topic"], tmp_path / "rank8", r=8)
    with pytest.raises(RunError, match=r"--combination linear needs adapters of one rank .* use svd or cat"):
        merge_runs([runs["sent"], rank8], output=tmp_path / "out", combination="linear")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"--output .*taken exists and is not a merge directory"):
        merge_runs([runs["sent"], runs["topic"]], output=tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
