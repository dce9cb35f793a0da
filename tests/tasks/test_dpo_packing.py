"""task: dpo with `lm.packing: true` (padding-free): a batch's 2B sequences in ONE row, position ids restarting at
0 at each, no attention mask. Packed and padded batches give the same per-sequence log-probs, DPO loss and
gradient, reference scores and evaluation; a packed run trains, says so in eval.json and computes less padding;
a model that would attend across packed sequences is refused. Tiny random models, fp32."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.config.recipe import validate_recipe
from tunesmith.data.chat import choose_template
from tunesmith.data.preference_encode import PreferenceCollator, encode_pairs
from tunesmith.errors import RecipeError
from tunesmith.evaluation.preference import packed_targets, reply_token_counts, sequence_logps
from tunesmith.models.packed_attention import check_packing, packing_leak
from tunesmith.recipes.finetune import FineTune, finetune
from tunesmith.tasks import make_task

from task_fixtures import dpo_recipe

pytestmark = pytest.mark.preflight_expected("lr_above_method")

# prompts of 1 to 12 words, replies of 1 to 11: pairs of different lengths, and sides of different lengths
FRAME = {
    "prompt": [[{"role": "user", "content": text}] for text in
               ("say the word one please now", "hi", "tell me a long story about the sea and the wind tonight")],
    "chosen": ["one", "hello there my friend, how are you today", "the sea"],
    "rejected": ["no, I will not do that at all", "go", "once upon a time the wind blew over the wide sea"],
}


def quiet(*_args, **_kwargs):
    pass


def train_losses(run) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["type"] == "train"]


@pytest.fixture
def models(tiny_bert_dir, tiny_gpt2_dir, tiny_llama_dir):
    return {"bert": tiny_bert_dir, "gpt2": tiny_gpt2_dir, "llama": tiny_llama_dir}


def encoded_features(model_dir) -> list[dict]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset, _ = encode_pairs(FRAME, tokenizer, choose_template(tokenizer, "auto"), max_length=128)
    return dataset.features


def test_a_packed_batch_is_one_row_of_the_sequences_with_restarting_positions():
    features = [
        {"chosen_input_ids": [5, 6, 7], "chosen_labels": [-100, 6, 7],
         "rejected_input_ids": [5, 8], "rejected_labels": [-100, 8], "pair_index": 4},
        {"chosen_input_ids": [9, 1], "chosen_labels": [9, 1],  # a first token with a label: never predicted
         "rejected_input_ids": [9, 2, 3, 4], "rejected_labels": [-100, 2, 3, 4], "pair_index": 0},
    ]
    packed = PreferenceCollator(pad_token_id=0, packed=True)(features)
    padded = PreferenceCollator(pad_token_id=0)(features)
    assert set(packed) == {"input_ids", "labels", "position_ids", "pair_index"}  # no attention mask
    assert packed["input_ids"].tolist() == [[5, 6, 7, 9, 1, 5, 8, 9, 2, 3, 4]]  # chosen first, then rejected
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 0, 1, 2, 3]]
    assert packed["labels"].tolist() == [[-100, 6, 7, -100, 1, -100, 8, -100, 2, 3, 4]]
    assert packed["pair_index"].tolist() == padded["pair_index"].tolist() == [4, 0]
    assert reply_token_counts(packed).tolist() == reply_token_counts(padded).tolist() == [2, 1, 1, 3]
    # a label on a sequence's first token (another collator's) is still not a target: shift-aware
    labels = torch.tensor([[-100, 6, 7, 9, 1, 5, 8, -100, 2, 3, 4]])
    where, segment, count = packed_targets(labels, packed["position_ids"])
    assert where.tolist() == [0, 1, 3, 5, 7, 8, 9] and segment.tolist() == [0, 0, 1, 2, 3, 3, 3] and count == 4


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_packed_log_probs_equal_the_padded_ones(fixture, request):
    model_dir = request.getfixturevalue(fixture)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    features = encoded_features(model_dir)
    lengths = [(len(f["chosen_input_ids"]), len(f["rejected_input_ids"])) for f in features]
    assert len(set(lengths)) == 3 and all(c != r for c, r in lengths)  # padding in every row but the longest
    padded = PreferenceCollator(0)(features)
    packed = PreferenceCollator(0, packed=True)(features)
    assert packed["input_ids"].shape == (1, int(padded["attention_mask"].sum()))  # nothing padded
    with torch.no_grad():
        logps, counts = sequence_logps(model, padded)
        packed_logps, packed_counts = sequence_logps(model, packed)
    assert packed_counts.tolist() == counts.tolist()
    # sums of about -110 (a random model): float32 rounding of a different matmul and summation order only
    torch.testing.assert_close(packed_logps, logps, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(packed_logps / packed_counts, logps / counts, rtol=0, atol=1e-5)  # per token
    # why every packed forward passes use_cache=False: a cache turns transformers' packed-sequence mask off
    with torch.no_grad():
        ids, positions = packed["input_ids"], packed["position_ids"]
        apart = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        cached = model(input_ids=ids, position_ids=positions, use_cache=True).logits
    assert not torch.allclose(apart, cached, atol=1e-4)


def perturbed(run) -> None:
    """Move the trainable weights away from the reference (the same way in every run), so the loss is not log 2."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, parameter in sorted((n, p) for n, p in run.model.named_parameters() if p.requires_grad):
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_dpo_loss_and_its_gradient_are_the_same_packed(models, tmp_path, method):
    """lora: the reference is the adapter switched off; full: the frozen copy. One held-out batch of 12 pairs."""
    found = {}
    for packing in (False, True):
        raw = dpo_recipe(models, tmp_path / str(packing), lm={"packing": packing},
                         method={"name": method, **({"dropout": 0.0} if method == "lora" else {})})
        run = FineTune(validate_recipe(raw), echo=quiet)
        run.setup()
        perturbed(run)
        batch = next(iter(run.loaders.held_out["validation"]))
        assert ("attention_mask" in batch) != packing and (batch["input_ids"].shape[0] == 1) == packing
        loss = run.task.compute_loss(run.model, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in run.model.named_parameters() if p.requires_grad}
        found[packing] = (float(loss.detach()), batch["pair_index"].tolist(), grads)
    (loss, pairs, grads), (packed_loss, packed_pairs, packed_grads) = found[False], found[True]
    assert packed_pairs == pairs and len(pairs) == 12
    assert abs(loss - math.log(2)) > 1e-3 and packed_loss == pytest.approx(loss, abs=1e-5)
    assert packed_grads.keys() == grads.keys() and any(g.abs().max() > 1e-4 for g in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_reference_scores_and_evaluation_are_the_same_packed(models, tmp_path):
    """The reference pass (kept scores, the metrics before training) and evaluate() of a moved policy."""
    found = {}
    for packing in (False, True):
        raw = dpo_recipe(models, tmp_path / str(packing), method={"name": "full"}, lm={"packing": packing})
        run = FineTune(validate_recipe(raw), echo=quiet)
        run.setup()
        loader = run.loaders.held_out["validation"]
        kept, before = run.task.score_with_reference(run.model, loader, run.accelerator, "reference")
        run.task.kept[id(loader.dataset)] = kept
        perturbed(run)
        found[packing] = kept, before, run.task.evaluate(run.model, loader, run.accelerator)
    (kept, before, after), (packed_kept, packed_before, packed_after) = found[False], found[True]
    assert torch.isfinite(kept).all() and kept.shape == (12, 2)
    torch.testing.assert_close(packed_kept, kept, rtol=1e-6, atol=1e-5)
    assert after["loss"] != pytest.approx(math.log(2), abs=1e-3)
    for name in before:
        assert packed_before[name] == pytest.approx(before[name], abs=1e-5), name
        assert packed_after[name] == pytest.approx(after[name], abs=1e-5), name


@pytest.mark.parametrize("reference", ["live", "precomputed"])
def test_a_packed_run_trains_as_the_padded_one_with_less_padding(models, tmp_path, reference):
    """6 steps of full fine-tuning packed and padded: the same losses; eval.json records the packing and a
    padding fraction of 0 (every computed position is a token) against the padded run's."""
    results = {}
    for packing in (False, True):
        raw = dpo_recipe(models, tmp_path / str(packing), method={"name": "full"}, lm={"packing": packing},
                         preference={"reference": reference})
        raw["train"]["max_steps"] = 6
        results[packing] = finetune(validate_recipe(raw), echo=quiet), train_losses(tmp_path / str(packing) / "run")
    (padded, padded_losses), (packed, packed_losses) = results[False], results[True]
    assert packed_losses == pytest.approx(padded_losses, abs=1e-5)
    assert packed["validation"]["loss"] == pytest.approx(padded["validation"]["loss"], abs=1e-5)
    saved = json.loads((tmp_path / "True" / "run" / "eval.json").read_text())
    assert saved["lm"]["packing"] is True and padded["lm"]["packing"] is False
    timing, padded_timing = packed["timing"], padded["timing"]
    assert timing["tokens"] == padded_timing["tokens"] > 0  # the same sequences
    assert timing["padding_fraction"] == 0 < padded_timing["padding_fraction"]
    assert timing["padded_tokens"] < padded_timing["padded_tokens"]


def test_a_packed_lora_run_learns_the_preference(models, tmp_path):
    raw = dpo_recipe(models, tmp_path, method={"name": "lora"}, lm={"packing": True})
    result = finetune(validate_recipe(raw), echo=quiet)
    assert result["baselines"]["validation"]["pretrained"]["reward_accuracy"] == 0.5
    assert result["validation"]["reward_accuracy"] >= 0.9 and result["validation"]["loss"] < 0.7 * math.log(2)
    assert result["lm"]["packing"] is True and result["timing"]["padding_fraction"] == 0


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_gpt2_and_llama_keep_packed_sequences_apart(fixture, request):
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(fixture), local_files_only=True)
    assert packing_leak(model) < 1e-6
    check_packing(model, one_row=True)
    check_packing(model, one_row=False)


def bloom_dir(tokenizer_dir, path):
    """A tiny random BLOOM (ALiBi: it takes no position ids) with the tiny GPT-2's tokenizer."""
    from transformers import BloomConfig, BloomForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    BloomForCausalLM(BloomConfig(vocab_size=len(tokenizer), hidden_size=32, n_layer=2, n_head=2)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("task", ["dpo", "sft"])
def test_a_model_that_attends_across_packed_sequences_is_refused(models, tmp_path, task):
    model_dir = bloom_dir(models["gpt2"], tmp_path / "bloom")
    raw = dpo_recipe(models, tmp_path, lm={"packing": True})
    raw.update(model=str(model_dir), task=task)
    raw.pop("preference")
    if task == "sft":
        raw["data"]["columns"] = {"instruction": "prompt", "output": "chosen"}
    with pytest.raises(RecipeError, match=r"^lm.packing: BloomForCausalLM with (eager|sdpa) attention does not "
                                          r"keep packed sequences apart \(the logits of a sequence change by"):
        make_task(validate_recipe(raw)).load_model(model_dir)
    raw["lm"]["packing"] = False
    make_task(validate_recipe(raw)).load_model(model_dir)  # unpacked, it is an ordinary causal LM


def test_flash_attention_packs_one_row_only(tiny_llama_dir):
    """Transformers finds packed sequences for flash attention only in a batch of one row (dpo), not sft's blocks."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, local_files_only=True)
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(RecipeError, match="finds packed sequences in a batch of one row only"):
        check_packing(model, one_row=False)
