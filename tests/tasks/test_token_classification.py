"""token_classification end to end on a tiny NER set (task_fixtures.ner_sentences): windows over long
sentences score every word once, a reloaded run (full or LoRA) gives the training run's own numbers, predict
offsets are exact substrings, the HF pipeline loads RUN/model, the CLI predict/evaluate and resume work."""

from __future__ import annotations

import json

import pytest
import yaml

from task_fixtures import ner_sentences, token_classification, write_conll
from tunesmith.cli import main
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import TrainedRun

LONG = [[("Mr.", "O"), ("Smith", "B-PER")] + [("said", "O"), ("today", "O")] * 15 + [("in", "O"), ("Rome", "B-LOC")]]


def quiet(*_args, **_kwargs):
    pass


def ner_recipe(tiny_bert_dir, root, **updates) -> dict:
    case = token_classification({"bert": tiny_bert_dir}, root)
    raw = case["raw"]
    raw["data"]["validation"] = {"path": str(write_conll(root / "valid.conll", ner_sentences(12, seed=7) + LONG))}
    raw["baselines"] = False
    raw.setdefault("report", {})["html"] = False
    raw["train"].update(epochs=6)
    for key, value in updates.items():
        raw[key] = value
    return raw


@pytest.fixture(scope="module", params=["full", "lora"])
def trained(request, tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"ner-{request.param}")
    raw = ner_recipe(tiny_bert_dir, root, method=request.param)
    if request.param == "lora":
        raw["train"]["lr"] = 1e-2
    result = finetune(validate_recipe(raw), echo=quiet)
    return root, raw, result


def test_the_model_learns_and_every_validation_word_is_scored_once(trained):
    root, raw, result = trained
    valid = result["validation"]
    words = sum(len(s) for s in ner_sentences(12, seed=7) + LONG)
    assert valid["f1"] >= 0.5, valid  # names after "Mr." and places after "in" (chance F1 is near 0)
    run = TrainedRun(root / "run")
    features = run.task.encode(run.read(raw["data"]["validation"]["path"], require_label=True), run.tokenizer)
    long_windows = [f for f in features.features if f["sentence"] == len(ner_sentences(12, seed=7))]
    assert len(long_windows) >= 3, "max_length 16 cuts the 34-word sentence into overlapping windows"
    loader = run.task.make_loader(features, run.tokenizer, batch_size=4, order="by_length")
    rows, _ = run.task.word_predictions(run.model, loader)
    assert sum(len(r) for r in rows.values()) == words and all(x is not None for r in rows.values() for x in r)


def test_the_reloaded_run_gives_the_training_runs_own_numbers(trained):
    root, raw, result = trained
    saved = json.loads((root / "run" / "eval.json").read_text())["validation"]
    again = TrainedRun(root / "run").evaluate_file(raw["data"]["validation"]["path"])
    for key in ("f1", "precision", "recall", "token_accuracy", "loss"):
        assert again[key] == pytest.approx(saved[key], abs=1e-4), key


def test_predicted_entities_are_exact_substrings_of_the_text(trained):
    root, _, _ = trained
    texts = ["Mr. Smith went home in Paris.", "  the Mr.  Jones Wilson said in   Rome!", "Ünïcode Mr. Brown in Wien"]
    frame = TrainedRun(root / "run").predict_texts(texts)
    assert list(frame.columns) == ["text", "prediction", "entities", "tags"]
    found = 0
    for text, entities, tags in zip(texts, frame["entities"], frame["tags"]):
        groups = json.loads(entities)
        found += len(groups)
        for group in groups:
            assert text[group["start"]:group["end"]] == group["word"] and 0 < group["score"] <= 1
            assert set(group) == {"entity_group", "word", "start", "end", "score"}
        assert len(tags.split()) == len([w for w in text.replace(".", " . ").replace("!", " ! ").split()])
    assert found >= 3


def test_the_hf_pipeline_loads_the_run(trained):
    from transformers import pipeline

    root, _, _ = trained
    config = json.loads((root / "run" / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert list(config["id2label"].values()) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    ner = pipeline("token-classification", model=str(root / "run" / "model"), aggregation_strategy="simple")
    out = ner("Mr. Smith went home in Paris.")
    assert isinstance(out, list) and all(o["entity_group"] in ("PER", "LOC") for o in out)


def test_cli_predict_and_evaluate(trained, capsys):
    root, raw, result = trained
    assert main(["predict", str(root / "run"), "--text", "Mr. Jones lives in Berlin."]) == 0
    assert "predictions" in capsys.readouterr().out
    out = root / "predictions.csv"
    assert main(["predict", str(root / "run"), "--input", raw["data"]["validation"]["path"], "--output", str(out)]) == 0
    import pandas as pd

    written = pd.read_csv(out)
    assert len(written) == 13 and {"entities", "tags"} <= set(written.columns)
    assert main(["evaluate", str(root / "run"), "--data", raw["data"]["validation"]["path"]]) == 0
    assert f"{result['validation']['f1']:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["freeze", "bitfit", "dora"])
def test_other_methods_train(method, tiny_bert_dir, tmp_path):
    raw = ner_recipe(tiny_bert_dir, tmp_path, method={"name": method} if method != "freeze" else
                     {"name": "freeze", "freeze": "layers", "layers": 1})
    raw["train"].update(max_steps=2)
    result = finetune(validate_recipe(raw), echo=quiet)
    assert result["steps"] == 2 and 0 <= result["validation"]["f1"] <= 1


def test_resume_is_the_same_run(tiny_bert_dir, tmp_path):
    """A run stopped after step 3 (a checkpoint at 3) and resumed gives the same losses and weights."""
    from safetensors.torch import load_file

    raw = ner_recipe(tiny_bert_dir, tmp_path, checkpoint={"every_steps": 3, "keep_on_finish": True})
    raw["train"].update(epochs=2, precision="fp32")
    reference = dict(raw, output=str(tmp_path / "reference"))
    finetune(validate_recipe(reference), echo=quiet)
    # stopped by SIGTERM after step 3 (the test-only hook of train/checkpoint.py), then resumed in-process
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(dict(raw, output=str(tmp_path / "resumed"))))
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "HF_HUB_OFFLINE": "1",
           "TUNESMITH_TEST_SIGNAL_AFTER_STEP": "3:TERM"}
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", "train", str(recipe)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 143, done.stderr[-2000:]
    assert main(["train", str(recipe), "--resume"]) == 0
    records = {}
    for name in ("reference", "resumed"):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        records[name] = [r["loss"] for r in map(json.loads, lines) if r["type"] == "train"]
    assert records["resumed"] == pytest.approx(records["reference"], abs=1e-6)
    a = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    b = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    assert all((a[k] - b[k]).abs().max() < 1e-6 for k in a)


@pytest.mark.parametrize("fmt", ["merged", "onnx"])
def test_export_re_evaluates_and_predicts_like_the_run(trained, fmt, tmp_path):
    from tunesmith.recipes.export import export_run

    root, raw, result = trained
    report = export_run(root / "run", fmt, output=tmp_path / fmt, max_drop=0.01, echo=quiet)
    assert report["passed"] and report["examples"] >= 13  # windows of the validation sentences
    assert report["export"]["metrics"]["f1"] == pytest.approx(result["validation"]["f1"], abs=1e-6)
    assert report["prediction_agreement"] == 1.0 and report["max_abs_logit_diff"] < 1e-3
    text = ["Mr. Smith went home in Paris.", "the Mr. Jones Wilson said in Rome " * 6]  # the second: windows
    exported = TrainedRun(tmp_path / fmt).predict_texts(text)
    original = TrainedRun(root / "run").predict_texts(text)
    assert exported["tags"].tolist() == original["tags"].tolist()
    assert exported["prediction"].tolist() == original["prediction"].tolist()


def test_report_shows_entity_types_confusion_and_marked_sentences(trained):
    from tunesmith.report import write_report

    root, _, result = trained
    run = root / "run"
    lines = [json.loads(line) for line in (run / "predictions_validation.jsonl").read_text().splitlines()]
    assert len(lines) == 13 and all(len(r["tokens"]) == len(r["gold"]) == len(r["predicted"]) for r in lines)
    saved = json.loads((run / "eval.json").read_text())["validation"]
    assert set(saved["per_type"]) == {"LOC", "PER"} and saved["per_type"]["LOC"]["support"] == 13
    page = write_report(run).read_text()
    for section in ("entity-types", "entity-confusion", "entity-examples"):
        assert f'<section id="{section}">' in page
    assert "<td>PER</td>" in page and "no gold entity (spurious)" in page
    assert '<mark style="background:' in page and "<sub>LOC</sub>" in page


def test_plan_measures_a_token_classification_recipe(tiny_bert_dir, tmp_path):
    from tunesmith.recipes.plan import plan

    raw = ner_recipe(tiny_bert_dir, tmp_path)
    result = plan(validate_recipe(raw), time_budget_s=3600, memory_budget=64 * 2**30, steps=1, echo=quiet)
    rows = {row["spec"]["name"]: row for row in result["candidates"]}
    assert set(rows) == {"full", "lora", "freeze", "bitfit"}
    assert all("error" not in row and row["step_s"] > 0 for row in rows.values()), rows
    assert result["batches_per_epoch"] == 6  # 48 sentences / batch 8


def test_evaluate_refuses_a_tag_the_model_does_not_know(trained, tmp_path, capsys):
    root, _, _ = trained
    bad = write_conll(tmp_path / "bad.conll", [[("Acme", "B-ORG"), ("rose", "O")]])
    assert main(["evaluate", str(root / "run"), "--data", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {bad}, line 3: tag 'B-ORG' is not one the model was trained "
                                               f"with (O, B-LOC, I-LOC, B-PER, I-PER)")


def test_label_all_tokens_trains_every_sub_token(tiny_bert_dir, tmp_path):
    from tunesmith.tasks import make_task
    from tunesmith.data.token_encode import IGNORE

    raw = ner_recipe(tiny_bert_dir, tmp_path, token_classification={"stride": 4, "label_all_tokens": True})
    raw["train"].update(max_steps=2)
    recipe = validate_recipe(raw)
    task = make_task(recipe)
    task.load_data()
    from tunesmith.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_bert_dir)
    features = task.encode(task.splits.train, tokenizer).features
    labelled = sum(label != IGNORE for f in features for label in f["labels"])
    assert labelled == sum(len(f["input_ids"]) - 2 for f in features)  # every sub-token but [CLS] and [SEP]
    assert finetune(recipe, echo=quiet)["steps"] == 2


def test_inspect_fail_on_stops_a_token_run_before_training(tiny_bert_dir, tmp_path):
    from tunesmith.errors import DataError

    raw = ner_recipe(tiny_bert_dir, tmp_path, inspect={"fail_on": ["leakage"]})
    raw["data"]["validation"] = {"path": raw["data"]["train"]}  # every held-out sentence is a training one
    with pytest.raises(DataError, match=r"^inspect found 1 problem\(s\) listed in inspect.fail_on: leakage: "):
        finetune(validate_recipe(raw), echo=quiet)
    assert not (tmp_path / "run" / "model").exists(), "stopped before any training"


def test_stratify_written_in_a_token_recipe_is_refused(tiny_bert_dir, tmp_path):
    from tunesmith.errors import RecipeError

    raw = ner_recipe(tiny_bert_dir, tmp_path)
    raw["data"]["validation"] = {"split": 0.25, "stratify": True}
    with pytest.raises(RecipeError, match="^data.validation.stratify: tagged sentences are not classes to stratify"):
        finetune(validate_recipe(raw), echo=quiet)


def test_document_context_trains_and_scores_every_word_once(tiny_bert_dir, tmp_path):
    raw = ner_recipe(tiny_bert_dir, tmp_path, token_classification={"stride": 4, "context": "document",
                                                                    "context_tokens": 4})
    raw["train"].update(max_length=32, epochs=2)
    result = finetune(validate_recipe(raw), echo=quiet)
    run = TrainedRun(tmp_path / "run")
    frame = run.read(raw["data"]["validation"]["path"], require_label=True)
    again = run.evaluate_file(raw["data"]["validation"]["path"])  # the run's own encoding, context included
    assert again["f1"] == pytest.approx(result["validation"]["f1"], abs=1e-4)
    features = run.task.encode(frame, run.tokenizer).features
    run.task.spec = run.task.spec.model_copy(update={"context": "none"})
    plain = run.task.encode(frame, run.tokenizer).features
    assert sum(len(f["input_ids"]) for f in features) > sum(len(f["input_ids"]) for f in plain) + 4 * len(frame), \
        "neighbouring sentences are read around each sentence"
    assert [f["labels"] for f in plain if len(f["labels"]) == len(f["input_ids"])]  # plain features still labelled
    assert sum(sum(i >= 0 for i in f["word_index"]) for f in features) >= sum(len(t) for t in frame["tokens"])
