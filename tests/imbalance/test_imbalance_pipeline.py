"""The imbalance section through a whole run: the training loss, the re-sampled epoch length and
the summary in eval.json; the recipe round-trips."""

import json

import pytest

from imbalance_data import quiet, recipe, skewed_rows, write_csv


@pytest.fixture(scope="module")
def undersampled(tiny_bert_dir, tmp_path_factory):
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    root = tmp_path_factory.mktemp("under")
    train = write_csv(root / "train.csv", skewed_rows(120, positive_every=5, seed=4))
    raw = recipe(tiny_bert_dir, train, root / "run", epochs=2, early_stopping={"metric": "balanced_accuracy"},
                 imbalance={"class_weights": "inverse", "loss": "focal", "gamma": 1.0, "label_smoothing": 0.05,
                            "resample": {"method": "undersample", "ratio": 1.0}})
    return finetune(validate_recipe(raw), echo=quiet), root / "run"


def test_undersampling_shortens_the_epoch(undersampled):
    result, run = undersampled
    counts = result["imbalance"]["train_counts"]
    assert counts == {"neg": 72, "pos": 18}
    per_epoch = -(-2 * 18 // 8)  # 18 of each class, batches of 8
    assert result["steps"] == 2 * per_epoch
    assert "undersample to ratio 1: 36 rows per epoch (neg 50.0%, pos 50.0%)" in result["imbalance"]["train_loader"]


def test_summary_names_the_loss_and_weights(undersampled):
    result, run = undersampled
    saved = json.loads((run / "eval.json").read_text())["imbalance"]
    assert saved["loss"] == "focal" and saved["gamma"] == 1.0 and saved["label_smoothing"] == 0.05
    assert saved["class_weights"] == pytest.approx({"neg": 90 / (2 * 72), "pos": 90 / (2 * 18)}, abs=1e-6)
    assert saved["measures"] == ["class_weights=inverse", "focal(gamma=1)", "label_smoothing=0.05",
                                 "undersample(ratio=1)"]
    assert result["best"]["metric"] == "balanced_accuracy"
    train_losses = [json.loads(line)["loss"] for line in open(run / "metrics.jsonl")
                    if json.loads(line)["type"] == "train"]
    assert train_losses and all(0 < x < 5 for x in train_losses)


def test_resolved_recipe_keeps_the_section_and_reloads(undersampled):
    from tunesmith.recipes.predict import TrainedRun

    _, run = undersampled
    assert "resample:\n    method: undersample" in (run / "recipe.yaml").read_text()
    trained = TrainedRun(run)
    assert trained.recipe.imbalance.loss == "focal"
    assert trained.task.threshold is None and trained.task.positive == 1  # stored positive label: 'pos'


def test_compute_loss_uses_the_configured_loss(tiny_bert_dir, tmp_path):
    """The task's training loss is the imbalance loss of the model's logits, not the model's own."""
    import torch

    from tunesmith.imbalance.losses import ImbalanceLoss
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.tasks import make_task

    train = write_csv(tmp_path / "train.csv", skewed_rows(40, positive_every=4))
    task = make_task(validate_recipe(recipe(tiny_bert_dir, train, tmp_path / "run",
                                            imbalance={"class_weights": {"pos": 3.0}})))
    task.load_data()
    model, tokenizer = task.load_model(tiny_bert_dir)
    model.eval()
    batch = dict(tokenizer(["great movie", "awful film", "love it"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([1, 0, 1])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        weights = task.imbalance.loss.weights
        assert (weights[1] / weights[0]).item() == pytest.approx(3.0)
        expected = ImbalanceLoss("ce", weights=weights)(logits, batch["labels"])
        assert task.compute_loss(model, batch).item() == pytest.approx(expected.item(), abs=1e-6)
        assert task.compute_loss(model, batch).item() != pytest.approx(model(**batch).loss.item(), abs=1e-4)
