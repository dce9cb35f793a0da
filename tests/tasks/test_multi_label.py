"""task: multi_label end to end on a tiny BERT: the labels and tuned thresholds in the model config (so
transformers' pipeline gives sigmoid scores), predict / evaluate / export / report / inspect / plan, and the
other methods (freeze, bitfit, dora) saving a usable head."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from multi_label_helpers import multi_label_recipe, topic_rows, write_jsonl
from tunesmith.cli import main
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.export import export_run
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import TrainedRun


def quiet(*_args, **_kwargs):
    pass


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tmp_path_factory):
    """One run: 160 training rows, a test file with a label ('art') that never occurs in train, pos_weight counts."""
    root = tmp_path_factory.mktemp("multi_label")
    train = write_jsonl(root / "train.jsonl", topic_rows(160, seed=1))
    test_rows = topic_rows(40, seed=2) + [("a painting and the plot", ["art"])]
    test = write_jsonl(root / "test.jsonl", test_rows)
    raw = multi_label_recipe(tiny_bert_dir, train, root / "run", epochs=4)
    raw["data"]["test"] = str(test)
    raw["train"]["eval_precision"] = "fp32"  # `tunesmith evaluate` (fp32) then reproduces the final scores exactly
    raw["multi_label"] = {"pos_weight": "counts"}
    lines = []
    result = finetune(validate_recipe(raw), echo=lines.append)
    return {"root": root, "run": root / "run", "raw": raw, "result": result, "lines": lines, "test": test}


def test_labels_thresholds_and_pos_weight_are_stored_in_the_model_config(trained):
    config = json.loads((trained["run"] / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {"0": "art", "1": "food", "2": "music", "3": "sport"}
    result = trained["result"]
    thresholds = config["tunesmith_thresholds"]
    assert set(thresholds) == {"art", "food", "music", "sport"} and thresholds["art"] == 0.5  # no validation positive
    assert {k: v["threshold"] for k, v in result["test"]["per_label"].items()} == thresholds
    assert result["multi_label"]["thresholds"] == thresholds
    assert config["tunesmith_pos_weight"][0] == 10.0  # art: no training positive -> the cap (max_pos_weight)
    assert [line for line in trained["lines"] if line.startswith("decision thresholds:")][0].endswith(
        "validation scores below are optimistic, test scores are not)")
    assert any(line.startswith("warning: [untrained_label] 1 label(s) never occur in train, only in held-out data: "
                               "'art' (test 1)") for line in trained["lines"])


def test_the_pipeline_gives_the_same_sigmoid_scores_as_predict(trained):
    from transformers import pipeline

    texts = ["the pizza and a guitar", "tennis"]
    frame = TrainedRun(trained["run"]).predict_texts(texts)
    scores = pipeline("text-classification", model=str(trained["run"] / "model"), top_k=None)(texts)
    for row, found in zip(frame.to_dict("records"), scores):
        by_label = {s["label"]: s["score"] for s in found}
        assert set(by_label) == {"art", "food", "music", "sport"}
        for label, score in by_label.items():
            assert score == pytest.approx(row[f"prob_{label}"], abs=1e-5)
        assert sum(by_label.values()) != pytest.approx(1.0)  # independent sigmoids, not a softmax


def test_predict_writes_the_label_set_and_one_probability_per_label(trained, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["predict", str(trained["run"]), "--input", str(trained["test"]), "--output", str(out)]) == 0
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns)[-5:] == ["prediction", "prob_art", "prob_food", "prob_music", "prob_sport"]
    cuts = json.loads((trained["run"] / "model" / "config.json").read_text())["tunesmith_thresholds"]
    for row in frame.to_dict("records"):
        expected = ",".join(n for n in ("art", "food", "music", "sport") if row[f"prob_{n}"] >= cuts[n])
        assert row["prediction"] == expected
    assert main(["predict", str(trained["run"]), "--text", "pizza"]) == 0
    assert "prob_sport" in capsys.readouterr().out


def test_evaluate_reproduces_the_final_test_scores(trained, capsys):
    metrics = TrainedRun(trained["run"]).evaluate_file(str(trained["test"]))
    final = trained["result"]["test"]
    for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "loss"):
        assert metrics[key] == pytest.approx(final[key], abs=1e-6), key
    assert main(["evaluate", str(trained["run"]), "--data", str(trained["test"])]) == 0
    assert "per label (data)" in capsys.readouterr().out


def test_evaluate_refuses_a_label_the_model_does_not_know(trained, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [("pizza", ["food"]), ("cats", ["pets"])])
    capsys.readouterr()
    assert main(["evaluate", str(trained["run"]), "--data", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {bad}, line 2: label 'pets' is not one of the model's 4 "
                                               f"labels (art, food, music, sport)")


def test_baselines_modal_set_and_tfidf_one_vs_rest(trained):
    baselines = trained["result"]["baselines"]["test"]
    modal = baselines["modal_set"]
    truth = [labels for _, labels in topic_rows(40, seed=2)] + [["art"]]
    train_sets = [tuple(labels) for _, labels in topic_rows(160, seed=1)]
    mode = max(set(train_sets), key=train_sets.count)
    assert modal["predicts"] == "{" + (", ".join(mode) or "no label") + "}"
    assert modal["subset_accuracy"] == pytest.approx(sum(tuple(t) == mode for t in truth) / len(truth))
    tfidf = baselines["tfidf_ovr"]
    assert tfidf["micro_f1"] > 0.9 and set(tfidf["thresholds"]) == {"art", "food", "music", "sport"}


def test_inspect_json_and_the_inspect_command(trained, tmp_path, capsys):
    inspected = json.loads((trained["run"] / "inspect.json").read_text())
    validation_rows = inspected["rows"]["validation"]
    assert inspected["rows"]["train"] + validation_rows == 160
    assert inspected["classes"]["test"]["art"] == 1 and inspected["classes"]["train"]["art"] == 0
    assert sum(inspected["cardinality"]["train"]["distribution"].values()) == inspected["rows"]["train"]
    assert {f["code"] for f in inspected["findings"]} >= {"untrained_label", "missing_class"}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(trained["raw"]))
    capsys.readouterr()
    assert main(["inspect", str(recipe), "--no-tokens", "--fail-on", "untrained_label"]) == 1
    out = capsys.readouterr().out
    assert "labels per row" in out and "labels seen together" in out and "untrained_label" in out


def test_report_has_the_per_label_table_with_thresholds(trained):
    html = (trained["run"] / "report.html").read_text()
    section = html[html.index('id="per-label"'):]
    assert "<th>threshold</th>" in section and "chosen on validation to maximise micro_f1" in section
    assert "TF-IDF + one-vs-rest logistic regression" in html


@pytest.mark.parametrize("fmt", ["merged", "onnx"])
def test_export_re_evaluates_with_the_tuned_thresholds(trained, fmt, capsys):
    report = export_run(trained["run"], fmt, echo=quiet, latency_examples=4, throughput_examples=16)
    validation = trained["result"]["validation"]
    assert report["metric"] == "micro_f1"
    assert report["reference"]["metrics"]["micro_f1"] == pytest.approx(validation["micro_f1"], abs=1e-6)
    assert report["export"]["metrics"]["micro_f1"] == pytest.approx(validation["micro_f1"], abs=1e-4)
    exported = trained["run"] / "exports" / fmt
    frame = TrainedRun(exported).predict_texts(["the pizza and a guitar"])
    reference = TrainedRun(trained["run"]).predict_texts(["the pizza and a guitar"])
    assert frame["prediction"].tolist() == reference["prediction"].tolist()
    np.testing.assert_allclose(frame["prob_food"], reference["prob_food"], atol=1e-4)


def test_an_unknown_label_in_pos_weight_is_one_recipe_line(trained, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**trained["raw"], "output": str(tmp_path / "run"),
                                      "multi_label": {"pos_weight": {"sports": 2.0}}}))
    capsys.readouterr()
    assert main(["train", str(recipe)]) == 2
    assert capsys.readouterr().err.strip() == ("error: multi_label.pos_weight: 'sports' is not a label of the training "
                                               "data; labels are art, food, music, sport")


def test_plan_measures_a_multi_label_recipe(trained, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**trained["raw"], "output": str(tmp_path / "run")}))
    capsys.readouterr()
    assert main(["plan", str(recipe), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "recommended:" in out and "failed" not in out  # the children rebuild the random split too


@pytest.mark.parametrize("method", [{"name": "freeze"}, {"name": "bitfit"}, {"name": "dora"}])
def test_other_methods_save_a_head_that_reloads(trained, tiny_bert_dir, tmp_path, method):
    raw = {**trained["raw"], "output": str(tmp_path / "run"), "method": method, "baselines": False,
           "report": {"html": False}}
    raw["train"] = {**raw["train"], "max_steps": 4}
    raw["data"] = {**raw["data"], "test": None}
    result = finetune(validate_recipe(raw), echo=quiet)
    reloaded = TrainedRun(tmp_path / "run")
    rows = pd.read_json(trained["raw"]["data"]["train"], lines=True)
    assert reloaded.task.names == ["food", "music", "sport"]
    assert reloaded.predict_texts(rows["text"].tolist()[:3])["prediction"].notna().all()
    assert result["validation"]["n"] > 0


def test_the_scratch_baseline_recipe_keeps_the_random_split_acceptable(tmp_path):
    from tunesmith.recipes.scratch import scratch_recipe
    from tunesmith.tasks import make_task

    train = write_jsonl(tmp_path / "t.jsonl", topic_rows(20, seed=1))
    base = validate_recipe(multi_label_recipe("m", train, tmp_path / "run"))
    derived = scratch_recipe(base, tmp_path / "init", tmp_path / "run" / "baselines" / "scratch")
    assert make_task(derived).load_data().names == ["food", "music", "sport"]  # no stratify: true appeared
    assert not derived.report.html and derived.data == base.data
