"""task: multi_task: the mixing rules, a tiny two-task run end to end, predict --task, exact resume, refusals."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from pipeline_helpers import sentiment_rows, write_csv
from tunesmith.cli import main
from tunesmith.config.recipe import validate_recipe
from tunesmith.data.mixing import MixedBatchSampler, draw_tasks, mixing_weights
from tunesmith.errors import RecipeError, RunError
from tunesmith.recipes.predict import TrainedRun

REPO = Path(__file__).resolve().parents[2]
TOPICS = {"sport": ["goal", "match", "team", "score"], "music": ["song", "band", "guitar", "album"]}


# --- the mixing rule -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, temperature, expected", [
    ("proportional", 1.0, {"a": 0.75, "b": 0.25}),
    ("temperature", 2.0, {"a": 3 ** 0.5 / (3 ** 0.5 + 1), "b": 1 / (3 ** 0.5 + 1)}),
    ("equal", 1.0, {"a": 0.5, "b": 0.5}),
])
def test_mixing_weights_and_draw_counts_follow_the_rule(rule, temperature, expected):
    weights = mixing_weights({"a": 300, "b": 100}, rule, temperature)
    assert weights == pytest.approx(expected)
    draws = draw_tasks(list(weights.values()), 20000, torch.Generator().manual_seed(1))
    share = draws.count(0) / len(draws)
    assert abs(share - expected["a"]) < 0.015  # 20000 draws: the standard error is about 0.0035


def test_mixed_batches_hold_one_task_each_and_the_generator_decides_the_order():
    offsets = [0, 30, 40]  # task 0: rows 0-29, task 1: rows 30-39
    sampler = MixedBatchSampler(offsets, [0.5, 0.5], batch_size=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8 + 3
    for batch in batches:
        assert all(i < 30 for i in batch) or all(30 <= i < 40 for i in batch)
    state = sampler.generator.get_state()
    again = list(sampler)
    sampler.generator.set_state(state)
    assert list(sampler) == again  # the generator's state is the whole of the order


# --- a tiny two-task run ---------------------------------------------------------------------------------------

def topic_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(TOPICS))
        rows.append((label, " ".join(rng.sample(TOPICS[label], 2) + ["the", "a", "it"])))
    return rows


def multi_recipe(model_dir: Path, root: Path, output: Path, **train) -> dict:
    settings = {"epochs": 2, "batch_size": 8, "lr": 2e-3, "warmup": 0.0, "max_length": 32, "log_every": 1,
                "seed": 0, **train}
    return {
        "model": str(model_dir), "task": "multi_task", "output": str(output), "train": settings,
        "tasks": {
            "sentiment": {"task": "classification",
                          "data": {"train": str(write_csv(root / "sentiment.csv", sentiment_rows(48, seed=3))),
                                   "validation": 0.25}},
            "topic": {"task": "classification", "metric": "accuracy",
                      "data": {"train": str(write_csv(root / "topic.csv", topic_rows(32, seed=4))),
                               "validation": 0.25}},
        },
        "multi_task": {"mixing": "temperature", "temperature": 2.0},
    }


def write_recipe(path: Path, raw: dict) -> str:
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["type"] == kind]


@pytest.fixture(scope="module")
def setup(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_task")
    raw = multi_recipe(tiny_bert_dir, root, root / "reference")
    raw["checkpoint"] = {"every_steps": 3, "keep_on_finish": True}
    return root, raw


@pytest.fixture(scope="module")
def reference(setup):
    root, raw = setup
    assert main(["train", write_recipe(root / "reference.yaml", raw)]) == 0
    return root / "reference"


def test_a_two_task_run_reports_each_task_and_saves_one_model_per_task(reference):
    result = json.loads((reference / "eval.json").read_text())
    assert result["task"] == "multi_task" and result["best"]["metric"] == "mean"
    validation = result["validation"]
    assert set(validation["sentiment"]) >= {"accuracy", "macro_f1", "loss"}
    assert set(validation["topic"]) >= {"accuracy", "loss"}
    assert validation["mean"] == pytest.approx((validation["sentiment"]["macro_f1"] + validation["topic"]["accuracy"]) / 2)
    assert result["tasks"]["topic"]["data"] == {"train": 24, "validation": 8}
    assert result["mixing"]["weights"]["sentiment"] == pytest.approx(36 ** 0.5 / (36 ** 0.5 + 24 ** 0.5))
    evals = records(reference, "eval")
    assert all("sentiment" in r and "topic" in r and "mean" in r for r in evals)
    trains = records(reference, "train")
    assert [r["step"] for r in trains] == list(range(1, result["steps"] + 1))
    assert result["steps"] == 2 * (5 + 3)  # an epoch: 36 / 8 -> 5 and 24 / 8 -> 3 batches
    # one body: the two saved models hold the same encoder weights, each its own head
    a = load_file(reference / "tasks/sentiment/model/model.safetensors")
    b = load_file(reference / "tasks/topic/model/model.safetensors")
    body = [k for k in a if k.startswith("bert.")]
    assert body and all(torch.equal(a[k], b[k]) for k in body)
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])


def test_predict_task_serves_each_task_as_its_own_model(reference, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["great wonderful film", "the band played a song"]
    for name in ("sentiment", "topic"):
        run = TrainedRun(reference, task=name)
        served = run.predict_texts(texts)
        model_dir = reference / "tasks" / name / "model"
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        tokens = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(model(**tokens).logits, -1).numpy()
        labels = [model.config.id2label[i] for i in probs.argmax(-1)]
        assert list(served["prediction"]) == labels
        np.testing.assert_allclose(served[f"prob_{labels[0]}"].to_numpy(),
                                   probs[:, model.config.label2id[labels[0]]], atol=1e-5)
    capsys.readouterr()
    assert main(["predict", str(reference), "--task", "topic", "--text", "goal match team"]) == 0
    out = capsys.readouterr().out
    assert "sport" in out or "music" in out  # a topic label (which one: checked against the model above)
    assert main(["predict", str(reference), "--text", "x"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {reference} is a multi-task run: choose a task with "
                                               f"--task NAME (sentiment, topic), or give the task's run directory {reference}/tasks/NAME")
    assert main(["predict", str(reference), "--task", "nope", "--text", "x"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {reference}: no task 'nope' in this multi-task run; its "
                                               f"tasks are sentiment, topic")
    with pytest.raises(RunError, match="is not a multi-task run"):
        TrainedRun(reference / "tasks" / "topic", task="topic")


def test_kill_and_resume_is_the_same_run(setup, reference, capsys):
    root, raw = setup
    run = root / "interrupted"
    recipe = write_recipe(root / "interrupted.yaml", {**raw, "output": str(run)})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"),
           "OMP_NUM_THREADS": str(torch.get_num_threads()), "TUNESMITH_TEST_SIGNAL_AFTER_STEP": "7:KILL"}
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", "train", recipe], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == -9, done.stderr[-3000:]
    capsys.readouterr()
    assert main(["train", recipe, "--resume"]) == 0  # from step 6 (epoch 1, batch 6 of 8): step 7 on replayed
    assert "step-00000006 (step 6 of 16, epoch 1, batch 6)" in capsys.readouterr().out
    ours, theirs = records(run, "train"), records(reference, "train")
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]
    np.testing.assert_allclose([r["loss"] for r in ours], [r["loss"] for r in theirs], rtol=0, atol=1e-6)
    ours_eval, theirs_eval = records(run, "eval"), records(reference, "eval")
    np.testing.assert_allclose([r["mean"] for r in ours_eval], [r["mean"] for r in theirs_eval], atol=1e-6)
    for name in ("sentiment", "topic"):
        a = load_file(run / f"tasks/{name}/model/model.safetensors")
        b = load_file(reference / f"tasks/{name}/model/model.safetensors")
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


# --- refusals ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(method={"name": "lora"}), "method: lora is not supported with task: multi_task"),
    (lambda r: r["tasks"]["topic"].update(task="causal_lm"), "tasks.topic.task: 'causal_lm' is not supported"),
    (lambda r: r["tasks"].pop("topic"), "needs 'tasks': a mapping of at least two task names"),
    (lambda r: r.update(baselines={"tfidf": False}), "baselines: not supported at the top of a multi-task recipe"),
    (lambda r: r["train"].update(early_stopping={"metric": "topic.rmse"}), "'topic.rmse' is not a metric"),
    (lambda r: r["tasks"]["topic"].update(imbalance={"resample": {"method": "oversample"}}),
     "tasks.topic.imbalance: re-sampling and augmentation are not supported"),
    (lambda r: r["tasks"]["topic"]["data"].update(trian="x"), "tasks.topic: unknown key 'data.trian'"),
])
def test_bad_multi_task_recipes_are_refused_with_one_line(setup, change, message, tmp_path, capsys):
    root, raw = setup
    raw = json.loads(json.dumps({**raw, "output": str(tmp_path / "run")}))
    change(raw)
    assert main(["train", write_recipe(tmp_path / "bad.yaml", raw)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_tasks_only_with_task_multi_task(setup):
    _, raw = setup
    with pytest.raises(RecipeError, match="tasks: only with task: multi_task"):
        validate_recipe({"model": "m", "data": {"train": "x.csv"}, "tasks": raw["tasks"]})


# --- a classification and a regression head on one body -------------------------------------------------------

def score_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        count = rng.randint(0, 3)
        rows.append((f"{count}.0", " ".join(["great"] * count + ["the", "film", "was"])))
    return rows


def test_classification_and_regression_share_a_body(setup, tmp_path, capsys):
    _, raw = setup
    raw = json.loads(json.dumps({**raw, "output": str(tmp_path / "run")}))
    raw.pop("checkpoint", None)
    raw["tasks"]["score"] = {"task": "regression", "metric": "rmse",
                             "data": {"train": str(write_csv(tmp_path / "score.csv", score_rows(32, 5))),
                                      "validation": 0.25}}
    recipe = write_recipe(tmp_path / "mixed.yaml", raw)
    assert main(["train", recipe]) == 2  # mean of macro_f1 (max) and rmse (min) has no direction
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: train.early_stopping.metric: mean: the tasks' metrics do not all improve the "
                          "same way (score rmse (min), sentiment macro_f1 (max), topic accuracy (max))"), err
    raw["train"]["early_stopping"] = {"metric": "score.rmse"}
    assert main(["train", write_recipe(tmp_path / "mixed.yaml", raw)]) == 0
    result = json.loads((tmp_path / "run/eval.json").read_text())
    assert result["best"]["metric"] == "score.rmse"
    evals = records(tmp_path / "run", "eval")
    best = min(r["score.rmse"] for r in evals if not r.get("final"))
    assert result["best"]["value"] == pytest.approx(best)
    assert {"rmse", "mae", "loss"} <= set(result["validation"]["score"])
    # evaluate --task on the validation rows gives the run's own final numbers for that task
    frame = TrainedRun(tmp_path / "run", task="score")
    assert frame.task.name == "regression"
    capsys.readouterr()
    out = tmp_path / "score_eval.json"
    assert main(["evaluate", str(tmp_path / "run"), "--task", "score", "--data", str(tmp_path / "score.csv"),
                 "--output", str(out)]) == 0
    assert json.loads(out.read_text())["rmse"] >= 0


def test_method_freeze_all_but_head_trains_only_the_heads(setup, tiny_bert_dir, tmp_path):
    _, raw = setup
    raw = json.loads(json.dumps({**raw, "output": str(tmp_path / "run")}))
    raw.pop("checkpoint", None)
    raw["method"] = {"name": "freeze", "freeze": "all_but_head"}
    raw["train"]["epochs"] = 1
    assert main(["train", write_recipe(tmp_path / "freeze.yaml", raw)]) == 0
    pretrained = load_file(tiny_bert_dir / "model.safetensors")
    for name in ("sentiment", "topic"):
        saved = load_file(tmp_path / f"run/tasks/{name}/model/model.safetensors")
        body = {k: v for k, v in saved.items() if k.startswith("bert.")}
        assert body and all(torch.equal(v, pretrained[k.removeprefix("bert.")]) for k, v in body.items())
    result = json.loads((tmp_path / "run/eval.json").read_text())
    assert result["method"]["trainable_params"] == 2 * (32 * 2 + 2)  # two heads 32 -> 2 (weights and biases)
    bert = sum(v.numel() for v in pretrained.values())
    assert result["method"]["total_params"] == bert + 2 * (32 * 2 + 2)  # the body counted once


def test_grouped_mixed_batches_keep_one_task_each_and_cut_padding():
    """train.group_by_length in a multi-task run: each task's rows grouped by length inside its own batches."""
    import random as _random

    rng = _random.Random(0)
    lengths = [[rng.randint(2, 60) for _ in range(400)], [rng.randint(2, 60) for _ in range(200)]]
    offsets = [0, 400, 600]
    flat = lengths[0] + lengths[1]

    def padded(sampler) -> int:
        return sum(len(batch) * max(flat[i] for i in batch) for batch in sampler)

    grouped = MixedBatchSampler(offsets, [0.5, 0.5], batch_size=8, seed=3, lengths=lengths)
    shuffled = MixedBatchSampler(offsets, [0.5, 0.5], batch_size=8, seed=3)
    batches = list(grouped)
    assert len(batches) == len(grouped) == 50 + 25
    for batch in batches:
        assert all(i < 400 for i in batch) or all(400 <= i < 600 for i in batch)
    assert padded(grouped) < 0.8 * padded(shuffled)  # random lengths 2-60: grouping removes most padding
    state = grouped.generator.get_state()
    again = list(grouped)
    grouped.generator.set_state(state)
    assert list(grouped) == again
    with pytest.raises(ValueError, match="one length per row"):
        MixedBatchSampler(offsets, [0.5, 0.5], batch_size=8, seed=3, lengths=[lengths[0], lengths[1][:5]])
