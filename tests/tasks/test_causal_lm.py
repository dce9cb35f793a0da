"""causal_lm: documents and validation splits, training on tiny GPT-2 / Llama, evaluation, generation,
and one real SmolLM2 run on a Shakespeare slice."""

import json
import math

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from lm_helpers import lm_recipe, shakespeare_slice, write_json
from tunesmith.cli import main
from tunesmith.data.encode import EncodedDataset
from tunesmith.data.lm_data import as_table, load_document_splits, read_documents, tail_split
from tunesmith.data.split import split_frame
from tunesmith.data.packing import make_lm_loader
from tunesmith.errors import DataError, ModelError, RecipeError
from tunesmith.recipes.generate import TrainedLM
from tunesmith.models import load_tokenizer, resolve_model
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune
from tunesmith.tasks import make_task

TEXT = "First:\nline one\nline two\n\n\nSecond:\nonly line\n\nThird:\nx\ny\n"


def recipe_for(path, **extra):
    raw = {"model": "x", "task": "causal_lm", "data": {"train": str(path)}}
    for key, value in extra.items():
        raw.setdefault(key, {}).update(value)
    return validate_recipe(raw)


# --- documents and splits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("unit, expected, lines", [
    ("paragraph", ["First:\nline one\nline two", "Second:\nonly line", "Third:\nx\ny"], [1, 6, 9]),
    ("line", ["First:", "line one", "line two", "Second:", "only line", "Third:", "x", "y"], [1, 2, 3, 6, 7, 9, 10, 11]),
    ("file", [TEXT.strip("\n")], [1]),
])
def test_txt_documents(tmp_path, unit, expected, lines):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    table, blank = read_documents(recipe_for(path).data, str(path), unit)
    assert table.column("text") == expected and table.column("line") == lines and blank == 0


def test_jsonl_documents_skip_blank_rows(tmp_path):
    path = write_json(tmp_path / "d.jsonl", [{"body": "a b"}, {"body": "  "}, {"body": "c"}], lines=True)
    spec = recipe_for(path, data={"columns": {"text": "body"}}).data
    table, blank = read_documents(spec, str(path))
    assert table.column("text") == ["a b", "c"] and table.column("line") == [1, 3] and blank == 1
    write_json(path, [{"body": t} for t in ("a", "b", "a", "c", "b", "d")], lines=True)
    recipe = recipe_for(path, data={"columns": {"text": "body"}, "drop_duplicates": True, "validation": {"split": 0.25}})
    splits = load_document_splits(recipe.data, recipe.lm, seed=0)
    assert sorted(splits.train.column("text") + splits.validation.column("text")) == ["a", "b", "c", "d"]
    assert splits.notes == [f"dropped 2 duplicate documents from {path}"]


def test_tail_split_cuts_at_a_document_boundary_in_file_order():
    import pandas as pd

    frame = pd.DataFrame({"text": ["a" * 50, "b" * 30, "c" * 10, "d" * 10], "line": [1, 2, 3, 4]})
    head, tail = tail_split(as_table(frame, "text"), 0.2)
    assert [t[0] for t in head.column("text")] == ["a", "b"] and [t[0] for t in tail.column("text")] == ["c", "d"]
    assert tail.column("line") == [3, 4]
    one = "\n".join(f"line {i}" for i in range(10))
    head, tail = tail_split(as_table(pd.DataFrame({"text": [one], "line": [1]}), "text"), 0.3)
    assert head.column("text")[0] + "\n" + tail.column("text")[0] == one  # cut at a line break, nothing lost
    assert tail.column("text") == ["line 8\nline 9"] and tail.column("line") == [9]  # the cut line stays in head


def test_document_split_is_random_and_one_document_needs_tail(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("\n\n".join(f"doc {i}" for i in range(20)))
    recipe = recipe_for(path, data={"validation": {"split": 0.25}})
    splits = load_document_splits(recipe.data, recipe.lm, seed=0)
    assert len(splits.train) == 15 and len(splits.validation) == 5
    assert sorted(splits.train.column("text") + splits.validation.column("text")) == sorted(
        f"doc {i}" for i in range(20))
    assert splits.validation.column("text") != [f"doc {i}" for i in range(15, 20)]  # not the tail
    # the documents split_frame holds out, each part in file order
    held = split_frame(pd.DataFrame({"text": [f"doc {i}" for i in range(20)]}), 0.25, seed=0, stratify=False)[1]
    assert splits.validation.column("text") == sorted(held["text"], key=lambda t: int(t.split()[1]))
    recipe = recipe_for(path, lm={"text_unit": "file"})
    with pytest.raises(DataError, match="holds one document.*lm.validation_by: tail"):
        load_document_splits(recipe.data, recipe.lm, seed=0)


def test_lm_recipe_defaults_and_errors(tmp_path):
    recipe = recipe_for("t.txt")
    assert make_task(recipe).stop_metric == "loss"
    assert recipe.train.early_stopping.metric is None  # the task derives it; the validated recipe is not written
    with pytest.raises(RecipeError, match="'macro_f1' is not a causal_lm metric; choose one of loss, perplexity"):
        make_task(recipe_for("t.txt", train={"early_stopping": {"metric": "macro_f1"}}))
    with pytest.raises(RecipeError, match=r"unknown key 'lm.blok_size' \(did you mean 'lm.block_size'\?\)"):
        recipe_for("t.txt", lm={"blok_size": 3})


# --- training ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    return shakespeare_slice(tmp_path_factory.mktemp("text") / "shakespeare.txt", 12_000)


def train_causal(model_dir, train, output, **settings):
    recipe = validate_recipe(lm_recipe(model_dir, "causal_lm", train, output, lm={"validation_by": "tail"},
                                       data={"validation": {"split": 0.1}}, **settings))
    return finetune(recipe, echo=lambda *_: None)


@pytest.fixture(scope="module")
def gpt2_run(tiny_gpt2_dir, shakespeare, tmp_path_factory):
    output = tmp_path_factory.mktemp("clm") / "run"
    return output, train_causal(tiny_gpt2_dir, shakespeare, output)


def _train_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["type"] == "train"]


def test_causal_lm_lowers_validation_loss_on_tiny_gpt2(gpt2_run):
    run_dir, result = gpt2_run
    before, after = result["baselines"]["validation"]["pretrained"], result["validation"]
    assert after["loss"] < before["loss"] - 1.0 and after["perplexity"] < before["perplexity"] / 3
    losses = _train_losses(run_dir)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    assert result["best"]["metric"] == "loss" and result["stop_reason"].startswith("finished the budget")


def test_tiny_llama_learns_too(tiny_llama_dir, shakespeare, tmp_path):
    result = train_causal(tiny_llama_dir, shakespeare, tmp_path / "run", epochs=2)
    before, after = result["baselines"]["validation"]["pretrained"], result["validation"]
    assert after["loss"] < before["loss"] - 0.5
    assert _train_losses(tmp_path / "run")[-1] < _train_losses(tmp_path / "run")[0] - 0.5
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")).__name__ == "LlamaForCausalLM"


def test_every_token_is_packed_once(gpt2_run, tiny_gpt2_dir, shakespeare):
    _, result = gpt2_run
    tokenizer = load_tokenizer(tiny_gpt2_dir)
    text = shakespeare.read_text()
    documents = [d.strip("\n") for d in text.split("\n\n") if d.strip()]
    expected = sum(len(ids) + 1 for ids in tokenizer(documents)["input_ids"])  # + EOS after each document
    stats = result["lm"]["splits"]
    assert stats["train"]["tokens"] + stats["validation"]["tokens"] == expected
    assert stats["train"]["documents"] + stats["validation"]["documents"] == len(documents)
    assert stats["train"]["blocks"] == math.ceil(stats["train"]["tokens"] / 64)
    # every target token of each validation block is scored, except the first of each block
    assert result["validation"]["tokens"] == stats["validation"]["tokens"] - stats["validation"]["blocks"]


def test_run_directory_and_generations(gpt2_run):
    run_dir, result = gpt2_run
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["task"] == "causal_lm" and set(saved["validation"]) >= {"loss", "perplexity", "tokens"}
    assert len(saved["generations"]) == 3
    assert all(set(g) == {"prompt", "reference", "before", "after"} for g in saved["generations"])
    assert saved["generations"][0]["prompt"].endswith(":\n")  # a speaker's name starts a speech
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model", local_files_only=True)
    assert type(model).__name__ == "GPT2LMHeadModel"


def test_evaluation_matches_the_models_own_loss(gpt2_run):
    run_dir, result = gpt2_run
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model", local_files_only=True).eval()
    tokenizer = load_tokenizer(run_dir / "model")
    blocks = [[(7 * i + j) % 300 + 1 for j in range(n)] for i, n in enumerate([64, 64, 30, 5])]
    loader = make_lm_loader(EncodedDataset([{"input_ids": b} for b in blocks]), tokenizer, batch_size=3,
                            order="sequential")

    class CPU:
        is_local_main_process = True

        def gather_for_metrics(self, x):
            return x

    task = make_task(validate_recipe(lm_recipe(run_dir / "model", "causal_lm", "x.txt", run_dir)))
    metrics = task.evaluate(model, loader, CPU())
    with torch.no_grad():
        sums = [model(input_ids=torch.tensor([b]), labels=torch.tensor([b])).loss.item() * (len(b) - 1) for b in blocks]
    assert metrics["tokens"] == sum(len(b) - 1 for b in blocks)
    assert metrics["loss"] == pytest.approx(sum(sums) / metrics["tokens"], rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


# --- generation -------------------------------------------------------------------------------------------


def test_generate_is_seed_deterministic(gpt2_run):
    run_dir, _ = gpt2_run
    lm = TrainedLM(run_dir)
    settings = {"max_new_tokens": 24, "temperature": 1.0, "top_p": 0.95}
    first = lm.generate(["ROMEO:\n", "To be"], seed=1, **settings)
    assert first == lm.generate(["ROMEO:\n", "To be"], seed=1, **settings)
    assert lm.generate(["To be"], seed=1, **settings) == first[1:]  # per prompt, not per batch position
    assert lm.generate(["ROMEO:\n"], seed=2, **settings) != first[:1]
    greedy = lm.generate(["ROMEO:\n"], temperature=0, max_new_tokens=24)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    lm.generate(["To be"], seed=1, **settings)
    assert torch.equal(torch.rand(3), expected)  # the caller's random state is untouched (training's, say)
    long = lm.generate(["word " * 300], temperature=0, max_new_tokens=24)  # past the 128 positions: cut on the left
    assert len(long) == 1 and isinstance(long[0], str)
    assert greedy == lm.generate(["ROMEO:\n"], temperature=0, max_new_tokens=24, seed=5)


def test_generate_cli(gpt2_run, capsys):
    run_dir, _ = gpt2_run
    argv = ["generate", str(run_dir), "--prompt", "KING:", "--max-new-tokens", "10", "--seed", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("KING:") and len(out) > len("KING:\n")
    assert main(argv) == 0 and capsys.readouterr().out == out
    assert main(argv[:4] + ["--top-p", "0"]) == 2
    assert "0 < top_p <= 1" in capsys.readouterr().err


def test_classification_commands_refuse_an_lm_run(gpt2_run, capsys):
    run_dir, _ = gpt2_run
    assert main(["predict", str(run_dir), "--text", "hello"]) == 2
    assert "is a causal_lm run: use tunesmith generate" in capsys.readouterr().err


def test_a_block_longer_than_the_model_is_an_error(tiny_gpt2_dir, shakespeare, tmp_path):
    recipe = validate_recipe(lm_recipe(tiny_gpt2_dir, "causal_lm", shakespeare, tmp_path / "run",
                                       lm={"block_size": 256}))
    with pytest.raises(RecipeError, match="lm.block_size: 256 tokens is more than the model's 128 positions"):
        finetune(recipe, echo=lambda *_: None)


# --- the real packaged model ------------------------------------------------------------------------------


@pytest.mark.real_model
def test_smollm2_lowers_validation_perplexity_on_shakespeare(tmp_path):
    try:
        model_dir = resolve_model("smollm2")
    except ModelError as exc:
        pytest.skip(str(exc))
    train = shakespeare_slice(tmp_path / "shakespeare.txt", 16_000)  # ~4,700 tokens; the last 10% validate
    recipe = validate_recipe(lm_recipe(
        model_dir, "causal_lm", train, tmp_path / "run", lm={"validation_by": "tail", "sample_max_new_tokens": 8,
                                                             "num_samples": 1},
        data={"validation": {"split": 0.1}}, epochs=1, max_steps=3, batch_size=2, lr=2e-4, max_length=128,
        eval_every=3, log_every=1))
    result = finetune(recipe, echo=lambda *_: None)
    before, after = result["baselines"]["validation"]["pretrained"], result["validation"]
    assert after["perplexity"] < before["perplexity"] * 0.9, (before, after)
    assert result["generations"][0]["before"] != result["generations"][0]["after"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model", local_files_only=True)
    assert model.config.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
