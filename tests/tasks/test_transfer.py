"""Starting from an earlier run (`model: RUN`, `init.head`), lineage, and `transfer.watch`, on tiny random models:
the head is kept (the parent's weights at step 0) or new (freshly initialised, not loaded), a label-set
mismatch with head: keep is refused, lineage names the parent and its recipe hash, watch records at step 0
equal an explicit evaluation of the parent's validation set, and cross-family starts work or are refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from lm_helpers import lm_recipe, shakespeare_slice
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from task_fixtures import TASK_FIXTURES
from task_fixtures import dpo as dpo_fixture
from task_fixtures import sft as sft_fixture
from tunesmith.artifacts import RUN_MARKER
from tunesmith.cli import main
from tunesmith.config.recipe import load_recipe, validate_recipe
from tunesmith.errors import ModelError, RecipeError
from tunesmith.recipes.finetune import finetune, prepare_data, prepare_model
from tunesmith.tasks import make_task


def quiet(*_args, **_kwargs):
    pass


def relabelled(rows, names: dict) -> list[tuple[str, str]]:
    return [(names[label], text) for label, text in rows]


@pytest.fixture(scope="module")
def parent(tiny_bert_dir, tmp_path_factory) -> Path:
    """A sentiment classifier (neg/pos) that has learned its task."""
    root = tmp_path_factory.mktemp("parent")
    train = write_csv(root / "train.csv", sentiment_rows(160, seed=1))
    raw = tiny_recipe(tiny_bert_dir, train, root / "run")  # 4 epochs: tests/recipes/test_pipeline.py learns in 60 steps
    raw.update(baselines=False)
    result = finetune(validate_recipe(raw), echo=quiet)
    assert result["validation"]["accuracy"] >= 0.9  # the watch test below needs a parent that learned
    return root / "run"


def child_recipe(parent: Path, root: Path, rows, **changes) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    train = write_csv(root / "train.csv", rows)
    raw = tiny_recipe(parent, train, root / "run", epochs=1)
    raw.update(baselines=False, report={"html": False})
    raw.update(changes)
    return raw


def loaded(raw: dict):
    """(task, model) as the run would start: data read, the model loaded with its head, the method applied."""
    recipe = validate_recipe(raw)
    task, _ = prepare_data(recipe, echo=quiet)
    model, _, _ = prepare_model(recipe, task, echo=quiet)
    return task, model


def parent_weights(parent: Path) -> dict:
    return load_file(str(parent / "model" / "model.safetensors"))


@pytest.mark.parametrize("head", [None, "keep"])
def test_a_kept_head_starts_as_the_parents(parent, tmp_path, head):
    raw = child_recipe(parent, tmp_path, sentiment_rows(80, seed=7), **({"init": {"head": head}} if head else {}))
    task, model = loaded(raw)
    saved = parent_weights(parent)
    assert task.head_start == "kept"
    assert torch.equal(model.classifier.weight, saved["classifier.weight"])
    assert torch.equal(model.classifier.bias, saved["classifier.bias"])
    assert torch.equal(model.bert.encoder.layer[1].output.dense.weight,
                       saved["bert.encoder.layer.1.output.dense.weight"])


def test_a_new_head_is_freshly_initialised_not_loaded(parent, tmp_path):
    """Same labels, same head shape: head: new must not load the parent's head."""
    task, model = loaded(child_recipe(parent, tmp_path, sentiment_rows(80, seed=7), init={"head": "new"}))
    saved = parent_weights(parent)
    assert task.head_start == "new"
    assert not torch.equal(model.classifier.weight, saved["classifier.weight"])
    assert torch.count_nonzero(saved["classifier.bias"]) > 0 and torch.count_nonzero(model.classifier.bias) == 0
    assert 0.005 < float(model.classifier.weight.detach().std()) < 0.05  # the library's init (initializer_range 0.02)
    assert torch.equal(model.bert.encoder.layer[1].output.dense.weight,
                       saved["bert.encoder.layer.1.output.dense.weight"])  # the body is the parent's


def test_other_labels_get_a_new_head_and_keep_is_refused(parent, tmp_path):
    rows = relabelled(sentiment_rows(80, seed=7), {"pos": "good", "neg": "bad"})
    task, model = loaded(child_recipe(parent, tmp_path / "auto", rows))
    assert task.head_start == "new" and model.config.id2label == {0: "bad", 1: "good"}
    with pytest.raises(RecipeError, match=r"init.head: keep: .* has the labels \['neg', 'pos'\], this run "
                                          r"\['bad', 'good'\]"):
        loaded(child_recipe(parent, tmp_path / "keep", rows, init={"head": "keep"}))


def test_the_parents_tuned_threshold_is_not_carried_over(parent, tmp_path):
    config = json.loads((parent / "model" / "config.json").read_text())
    assert config["tunesmith_positive_label"] in ("neg", "pos")  # stored by the parent's classification task
    copy = tmp_path / "parent"
    import shutil

    shutil.copytree(parent, copy)
    config["tunesmith_threshold"] = {"label": "pos", "value": 0.9}
    (copy / "model" / "config.json").write_text(json.dumps(config))
    _, model = loaded(child_recipe(copy, tmp_path / "child", sentiment_rows(40, seed=7)))
    assert not hasattr(model.config, "tunesmith_threshold")  # the child's own task sets its positive label again
    assert "tunesmith_threshold" in json.loads((copy / "model" / "config.json").read_text())  # the copy held it


def explicit_parent_metrics(parent: Path, model_dir: Path | None = None, body_of: Path | None = None) -> dict:
    """The parent's validation set, rebuilt from its recipe and evaluated with its own saved model (or the one in
    `model_dir`; with the body weights of the model in `body_of`, when given)."""
    task = make_task(load_recipe(parent / "recipe.yaml"))
    splits = task.load_data()
    model, tokenizer = task.load_trained(model_dir or parent / "model")
    if body_of is not None:
        body = {k.removeprefix("bert."): v for k, v in load_file(str(body_of / "model.safetensors")).items()
                if k.startswith("bert.")}
        model.bert.load_state_dict(body)
    task.use_trained(model)
    loader = task.make_loader(task.encode(splits.validation, tokenizer), tokenizer, batch_size=7, order="sequential")
    return task.evaluate(model, loader, Accelerator(cpu=True))


def watch_records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("split") == "watch"]


@pytest.mark.parametrize("labels", ["same", "other"])
def test_lineage_and_watch_records(parent, tmp_path, labels):
    rows = sentiment_rows(64, seed=9)
    if labels == "other":  # a new head: the watched head is put on this run's body
        rows = relabelled(rows, {"pos": "good", "neg": "bad"})
    raw = child_recipe(parent, tmp_path, rows, transfer={"watch": str(parent)}, report={"html": True})
    raw["train"].update(epochs=2, eval_precision="fp32")  # as explicit_parent_metrics evaluates
    result = finetune(validate_recipe(raw), echo=quiet)
    lineage = result["lineage"]
    parent_eval = json.loads((parent / "eval.json").read_text())
    assert lineage["parent"] == str(parent.resolve()) and lineage["task"] == "classification"
    assert lineage["recipe_sha256"] == hashlib.sha256((parent / "recipe.yaml").read_bytes()).hexdigest()
    assert lineage["best"] == parent_eval["best"] and lineage["head"] == ("kept" if labels == "same" else "new")
    assert lineage["validation"]["macro_f1"] == parent_eval["validation"]["macro_f1"]
    assert lineage["ancestors"] == []

    records = watch_records(tmp_path / "run")
    during = [r for r in records if not r.get("final")]
    validation_steps = [r["step"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
                        if r.get("type") == "eval" and r.get("split") == "validation" and not r.get("final")]
    assert [r["step"] for r in during] == [0, *validation_steps] and len(validation_steps) == 2
    explicit = explicit_parent_metrics(parent)
    step0 = during[0]
    assert step0["n"] == explicit["n"] == parent_eval["validation"]["n"]
    assert step0["accuracy"] == explicit["accuracy"] and step0["macro_f1"] == explicit["macro_f1"]
    assert step0["loss"] == pytest.approx(explicit["loss"], rel=1e-5)
    watch = result["transfer"]["watch"]
    assert watch["how"] == ("direct" if labels == "same" else "body") and watch["metric"] == "macro_f1"
    assert watch["before"]["macro_f1"] == step0["macro_f1"]
    final = [r for r in records if r.get("final")][0]
    assert watch["after"]["macro_f1"] == final["macro_f1"]
    # the best model on the parent's task: this run's model itself (same labels), or its body under the parent's head
    child = tmp_path / "run" / "model"
    explicit = explicit_parent_metrics(parent, model_dir=child) if labels == "same" else explicit_parent_metrics(parent, body_of=child)
    assert final["loss"] == pytest.approx(explicit["loss"], rel=1e-5) and final["accuracy"] == explicit["accuracy"]
    assert final["loss"] != pytest.approx(step0["loss"], rel=1e-3)  # training moved the body
    assert watch["change"] == pytest.approx(watch["after"]["macro_f1"] - watch["before"]["macro_f1"])
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="transfer"' in html and str(parent.resolve()) in html

    # the child as the start of a grandchild: the chain goes back to the grandparent
    grandchild = child_recipe(tmp_path / "run", tmp_path / "grandchild", rows)
    task, _ = loaded(grandchild)
    chain = task.lineage()
    assert chain["parent"] == str((tmp_path / "run").resolve()) and chain["head"] == "kept"
    assert [a["parent"] for a in chain["ancestors"]] == [str(parent.resolve())]


def test_a_merged_export_is_a_start(parent, tmp_path):
    from tunesmith.recipes.export import export_run

    export_run(parent, "merged", output=tmp_path / "merged", latency_examples=2, throughput_examples=4, echo=quiet)
    task, model = loaded(child_recipe(tmp_path / "merged", tmp_path / "child", sentiment_rows(40, seed=7)))
    assert task.head_start == "kept" and task.lineage()["export"] == "merged"
    assert task.lineage()["best"] == json.loads((parent / "eval.json").read_text())["best"]
    assert torch.equal(model.classifier.weight, parent_weights(parent)["classifier.weight"])


def test_unfinished_runs_and_onnx_exports_are_refused(parent, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints" / "step-10").mkdir(parents=True)
    (unfinished / RUN_MARKER).write_text("{}")
    (unfinished / "recipe.yaml").write_text((parent / "recipe.yaml").read_text())
    raw = child_recipe(unfinished, tmp_path / "child", sentiment_rows(40, seed=7))
    with pytest.raises(ModelError, match=r"is an unfinished tunesmith run \(only checkpoints\)"):
        loaded(raw)
    recipe = tmp_path / "child.yaml"
    recipe.write_text(json.dumps(raw))
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: model: {unfinished} is an unfinished tunesmith run")
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "export.json").write_text(json.dumps({"format": "onnx", "run": str(parent)}))
    (onnx / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="is an onnx export, which holds no trainable weights"):
        loaded(child_recipe(onnx, tmp_path / "child2", sentiment_rows(40, seed=7)))


def test_init_without_a_run_is_refused(tiny_bert_dir, tmp_path):
    raw = child_recipe(tiny_bert_dir, tmp_path, sentiment_rows(40, seed=7), init={"head": "new"})
    with pytest.raises(RecipeError, match="init: applies when model: names a finished tunesmith run"):
        prepare_data(validate_recipe(raw), echo=quiet)
    with pytest.raises(RecipeError, match="init.head"):
        validate_recipe({**raw, "init": {"head": "old"}})


@pytest.mark.parametrize("task", ["regression", "multi_label", "token_classification"])
def test_a_classification_run_starts_another_classification_family_task(parent, tiny_bert_dir, tmp_path, task):
    raw = TASK_FIXTURES[task]({"bert": tiny_bert_dir}, tmp_path)["raw"]
    raw.update(model=str(parent), baselines=False)
    task_object, model = loaded(raw)
    saved = parent_weights(parent)
    assert task_object.head_start == "new" and task_object.lineage()["task"] == "classification"
    assert torch.equal(model.bert.encoder.layer[1].output.dense.weight,
                       saved["bert.encoder.layer.1.output.dense.weight"])
    assert type(model).__name__ == ("BertForTokenClassification" if task == "token_classification"
                                    else "BertForSequenceClassification")
    assert not any(key.startswith("tunesmith_positive") for key in vars(model.config))  # the parent's, dropped
    with pytest.raises(RecipeError, match=f"is a classification run, so it has no {task} head"):
        loaded({**raw, "init": {"head": "keep"}})


def test_an_encoder_classifier_cannot_start_a_causal_lm(parent, tmp_path):
    raw = lm_recipe(parent, "causal_lm", shakespeare_slice(tmp_path / "text.txt", 2000), tmp_path / "run")
    with pytest.raises(ModelError, match=r"is a classification run \(BertForSequenceClassification\): a causal_lm "
                                         r"run needs a language-model head"):
        loaded(raw)


def test_a_causal_lm_run_starts_a_classification_run(tiny_gpt2_dir, tmp_path):
    raw = lm_recipe(tiny_gpt2_dir, "causal_lm", shakespeare_slice(tmp_path / "text.txt", 3000), tmp_path / "lm",
                    epochs=1, max_length=32)
    finetune(validate_recipe({**raw, "baselines": False, "report": {"html": False}}), echo=quiet)
    child = child_recipe(tmp_path / "lm", tmp_path / "cls", sentiment_rows(64, seed=3))
    task, model = loaded(child)
    saved = load_file(str(tmp_path / "lm" / "model" / "model.safetensors"))
    assert type(model).__name__ == "GPT2ForSequenceClassification" and task.head_start == "new"
    assert torch.equal(model.transformer.h[0].attn.c_attn.weight, saved["transformer.h.0.attn.c_attn.weight"])
    eos = model.config.eos_token_id
    assert model.config.pad_token_id == eos  # the saved tokenizer pads with eos; the classifier finds the last token
    with pytest.raises(RecipeError, match="init.head: keep: .* is a causal_lm run, so it has no classification head"):
        loaded({**child, "init": {"head": "keep"}})
    result = finetune(validate_recipe(child), echo=quiet)
    assert result["lineage"]["task"] == "causal_lm" and result["lineage"]["head"] == "new"
    assert result["validation"]["loss"] == pytest.approx(result["validation"]["loss"])  # finite


@pytest.mark.preflight_expected("lr_above_method")  # a tiny random model: it trains at rates far above a pretrained one's
def test_an_sft_run_starts_a_dpo_run_and_is_watched(tiny_bert_dir, tiny_gpt2_dir, tiny_llama_dir, tmp_path):
    models = {"bert": tiny_bert_dir, "gpt2": tiny_gpt2_dir, "llama": tiny_llama_dir}
    (tmp_path / "sft").mkdir()
    sft = sft_fixture(models, tmp_path / "sft")["raw"]
    sft.update(baselines=False, report={"html": False})
    finetune(validate_recipe(sft), echo=quiet)
    parent = Path(sft["output"])
    (tmp_path / "dpo").mkdir()
    dpo = dpo_fixture(models, tmp_path / "dpo")["raw"]
    dpo.update(model=str(parent), baselines=False, report={"html": False}, transfer={"watch": str(parent)})
    dpo["train"].update(epochs=1)
    result = finetune(validate_recipe(dpo), echo=quiet)
    assert result["lineage"]["task"] == "sft" and result["lineage"]["head"] == "kept"
    step0 = watch_records(Path(dpo["output"]))[0]
    parent_eval = json.loads((parent / "eval.json").read_text())
    # before any dpo step the policy is the sft model: the sft validation loss as the sft run measured it
    assert step0["step"] == 0 and step0["loss"] == pytest.approx(parent_eval["validation"]["loss"], rel=1e-5)
    assert result["transfer"]["watch"]["how"] == "direct"
    template = json.loads((parent / "model" / "tokenizer_config.json").read_text()).get("chat_template") or \
        (parent / "model" / "chat_template.jinja").read_text()
    saved = Path(dpo["output"]) / "model"
    child_template = json.loads((saved / "tokenizer_config.json").read_text()).get("chat_template") or \
        (saved / "chat_template.jinja").read_text()
    assert child_template == template  # the chat template came with the parent's tokenizer


def test_a_dpo_run_or_another_family_cannot_be_watched(parent, tmp_path):
    from types import SimpleNamespace

    from tunesmith.recipes.transfer_watch import watch_mode

    config = SimpleNamespace(id2label={0: "neg", 1: "pos"})
    task = SimpleNamespace(name="classification")
    dpo_run = SimpleNamespace(task="dpo", path=Path("runs/dpo"), id2label={})
    with pytest.raises(RecipeError, match="transfer.watch: runs/dpo is a dpo run"):
        watch_mode(dpo_run, task, "full", config)
    lm_run = SimpleNamespace(task="sft", path=Path("runs/sft"), id2label={})
    with pytest.raises(RecipeError, match="is a sft run and this is a classification run"):
        watch_mode(lm_run, task, "full", config)
    other = SimpleNamespace(task="classification", path=Path("runs/topics"), id2label={0: "a", 1: "b"})
    assert watch_mode(other, task, "full", config) == "body"
    with pytest.raises(RecipeError, match="which a lora adapter does not train in place"):
        watch_mode(other, task, "lora", config)
    same = SimpleNamespace(task="classification", path=Path("runs/s"), id2label={0: "neg", 1: "pos"})
    assert watch_mode(same, task, "lora", config) == "direct"
