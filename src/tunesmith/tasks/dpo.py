"""Preference tuning on chosen/rejected pairs: DPO (sigmoid, conservative), IPO, and reference-free SimPO.

Data (data/preference_data.py): prompt/chosen/rejected columns, chat messages per side, or whole dialogues
(Anthropic HH "\\n\\nHuman: ...\\n\\nAssistant: ...") split into the shared prompt and the two replies; bad
pairs are findings, dropped or an error (`preference.invalid_pairs`). Each side is rendered with the chat
template as sft renders a conversation; labels cover the reply only; a long pair keeps its replies and
loses the start of its prompt (data/preference_encode.py). A batch of B pairs is one forward of 2B sequences:
right-padded rows, or with `lm.packing: true` padding-free, the 2B sequences end to end in ONE row with
position ids restarting at 0 at each and no attention mask (as TRL's padding_free): transformers keeps them
apart (a model that would not is refused: models/packed_attention.py) and each sequence's reply log-prob is
summed over its own segment (evaluation/preference.py packed_logps). Policy, reference (adapter off, frozen
copy, precomputed) and evaluation all score through that one function, so packed and padded give the same
numbers (tests/tasks/test_dpo_packing.py). eval.json "lm" records `packing`.

The reference model is the pretrained model: with lora / dora, the same model with its adapter switched off
(no second copy); otherwise a frozen copy made before the method is applied. Held-out pairs are scored by
the reference once, before training, and keep the two numbers; `preference.reference: precomputed` does the
same for the training pairs, so training runs one model (and a full fine-tune drops the copy).

Metrics (evaluation/preference.py), on held-out pairs before training (eval.json "baselines": pretrained),
at every evaluation, and for the best model: loss, reward accuracy (a tie counts one half, so 0.5 before
training), reward margin, chosen/rejected rewards and log-probs, and logp_accuracy. The trained RUN/model is
a causal LM (AutoModelForCausalLM) with the chat template in its tokenizer: `tunesmith generate` works on it.
"""

from __future__ import annotations

import copy
import json
import logging
from contextlib import nullcontext

import torch
from tqdm.auto import tqdm

from tunesmith.artifacts import write_text_atomic
from tunesmith.data.preference_data import load_preference_splits
from tunesmith.data.preference_encode import encode_pairs, make_preference_loader
from tunesmith.data.findings import promote_failures
from tunesmith.errors import RecipeError
from tunesmith.evaluation.preference import (
    PAIR_METRICS, SideLogps, pair_records, preference_losses, reply_token_counts, sequence_logps, summarize_pairs,
)
from tunesmith.inspection import check_failures
from tunesmith.tasks.sft import SFTTask

log = logging.getLogger("tunesmith.tasks")

ADAPTER_METHODS = ("lora", "dora")
LOWER_IS_BETTER = ("loss", "rejected_reward", "rejected_logp")


class DPOTask(SFTTask):
    name = "dpo"
    unit = "pairs"
    metric_names = PAIR_METRICS
    default_metric = "loss"
    bounded_metrics = ("reward_accuracy", "logp_accuracy")
    summary_columns = ("loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward")
    random_held_out = "preference pairs"
    one_packed_row = True  # lm.packing: a batch's 2B sequences in one row

    def __init__(self, recipe):
        super().__init__(recipe)
        if recipe.lm.num_proc is not None:
            raise RecipeError("lm.num_proc: dpo reads its pairs into memory and tokenizes them in one process; "
                              "remove it")
        self.check_random_held_out()
        self.preference = recipe.preference
        self.reference_model = None  # the frozen copy (full / freeze / bitfit, until precomputed)
        self.kept: dict[int, torch.Tensor] = {}  # held-out datasets' reference scores, by id(dataset)
        self.kept_train: torch.Tensor | None = None  # reference: precomputed, the training pairs'
        self.findings = None

    # ---- data -------------------------------------------------------------------------------
    def load_data(self):
        self.splits, self.columns = load_preference_splits(self.recipe.data, self.preference,
                                                           seed=self.recipe.train.seed)
        self.findings = self.splits.findings
        return self.splits

    def inspect_data(self, splits, tokenizer, echo) -> None:
        """The pairs dropped (or found) while reading; `inspect.fail_on: [prompt_mismatch, ...]` stops the run."""
        if self.findings is None:
            return
        promote_failures(self.findings.findings, self.recipe.inspect.fail_on)
        self.findings.echo_findings(echo, counts=False)
        check_failures(self.findings)

    def inspect_recipe(self, *, tokens: bool = True):
        """`tunesmith inspect RECIPE`: the pair findings as `train` makes them."""
        self.load_data()
        promote_failures(self.findings.findings, self.recipe.inspect.fail_on)
        return self.findings

    def inspect_summary(self) -> dict | None:
        return None if self.findings is None else self.findings.summary()

    def encode_settings(self, tokenizer) -> dict | None:
        return {"max_length": self.recipe.train.max_length, "chat_template": self.chat_template(tokenizer),
                "pairs": "prompt-left-cut"}

    def encode(self, frame, tokenizer, *, with_labels: bool = True):
        dataset, stats = encode_pairs(frame, tokenizer, self.chat_template(tokenizer), self.recipe.train.max_length)
        split = self._split_of(frame)
        self.stats[split] = stats
        self._warn_truncated(split, stats)
        return dataset

    def _warn_truncated(self, split: str, stats: dict) -> None:
        cut, replies = stats.get("prompt_truncated", 0), stats.get("reply_truncated", 0)
        if cut or replies:
            log.warning("%s: %d of %d pairs are longer than train.max_length=%d: %d lost the start of their prompt"
                        "%s", split, max(cut, replies), stats["pairs"], self.recipe.train.max_length, cut,
                        f", {replies} also had a reply cut on the right" if replies else "")

    def encode_summary(self) -> dict:
        return {"packing": self.lm.packing, "splits": self.stats}

    def make_loader(self, dataset, tokenizer, *, batch_size: int, order: str, seed: int = 0):
        """Batches of `batch_size` pairs: 2B padded rows, or (lm.packing) one row of the 2B sequences. The
        encoded pairs are the same either way (so is the token cache's key): only the collation differs."""
        return make_preference_loader(dataset, tokenizer, batch_size=batch_size, order=order, seed=seed,
                                      packed=self.lm.packing)

    def default_prompts(self, frame) -> list[dict]:
        """The held-out prompts (their last user turn shown; the whole prompt generated from)."""
        prompts = []
        for messages, chosen, rejected in zip(frame["prompt"], frame["chosen"], frame["rejected"]):
            last = next(m["content"] for m in reversed(messages) if m["role"] == "user")
            prompts.append({"prompt": last, "messages": list(messages), "reference": chosen, "rejected": rejected})
        return prompts

    # ---- the reference model ----------------------------------------------------------------
    def load_model(self, model_dir):
        model, tokenizer = super().load_model(model_dir)
        if self.preference.uses_reference and self.recipe.method.name not in ADAPTER_METHODS:
            self.reference_model = frozen_copy(model)
        return model, tokenizer

    def reference_of(self, model):
        """(context, module) that scores with the reference: the adapter switched off, or the frozen copy."""
        if self.reference_model is not None:
            return nullcontext(), self.reference_model
        inner = getattr(model, "module", model)  # under DistributedDataParallel
        return inner.disable_adapter(), inner

    @torch.no_grad()
    def reference_logps(self, model, batch, kept: torch.Tensor | None = None) -> SideLogps:
        """The reference's scores of the batch's pairs: looked up in `kept` ((pairs, 2), by pair_index), or computed."""
        if kept is not None:
            scores = kept.to(batch["labels"].device)[batch["pair_index"]]
            return SideLogps(scores[:, 0], scores[:, 1], *reply_token_counts(batch).chunk(2))
        context, module = self.reference_of(model)
        with context:
            return SideLogps.from_sequences(*sequence_logps(module, batch))

    @torch.no_grad()
    def score_with_reference(self, model, loader, accelerator, desc: str) -> tuple[torch.Tensor, dict]:
        """(kept, before): the reference's summed reply log-probs of every pair of `loader` ((pairs, 2), chosen
        and rejected; kept on the task, never written into the data, so the checkpoint's data fingerprint does
        not change), and the held-out metrics before training. Those need no second pass: before any step
        the policy computes what the reference does (a new adapter adds zero; a full fine-tune starts from
        the copy), so its metrics are the reference scored against itself."""
        kept = torch.full((len(loader.dataset), 2), float("nan"))
        rows = []
        was_training = model.training
        model.eval()
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            scores = self.reference_logps(model, batch)
            kept[batch["pair_index"].cpu()] = torch.stack([scores.chosen, scores.rejected], 1).float().cpu()
            losses = preference_losses(self.preference, scores, scores)
            rows.append(accelerator.gather_for_metrics(pair_records(losses, scores)).cpu())
        model.train(was_training)
        return kept, summarize_pairs(torch.cat(rows) if rows else torch.zeros(0, len(PAIR_METRICS)))

    def before_training(self, model, tokenizer, eval_loaders: dict, accelerator, *, train_data=None) -> None:
        """One reference pass over the held-out pairs (kept, and the metrics before training); with
        `reference: precomputed` one over the training pairs; then generations from the held-out prompts.
        simpo (no reference) evaluates the pretrained model as sft does."""
        if not self.preference.uses_reference:
            return super().before_training(model, tokenizer, eval_loaders, accelerator)
        if self.reference_model is not None:
            self.reference_model.to(accelerator.device)
        for name, loader in eval_loaders.items():
            self.kept[id(loader.dataset)], self.before[name] = self.score_with_reference(
                model, loader, accelerator, f"{name} (reference)")
        if self.preference.reference == "precomputed" and train_data is not None:
            batch = self.recipe.train.eval_batch_size or self.recipe.train.batch_size * 2
            loader = self.make_loader(train_data, tokenizer, batch_size=batch, order="by_length")
            self.kept_train = self.score_with_reference(model, loader, accelerator, "train (reference)")[0]
            self.reference_model = None  # training reads the kept numbers: one model in memory
        self.generate_before(model, tokenizer, accelerator)

    # ---- training and evaluation ------------------------------------------------------------
    def pair_losses(self, model, batch, kept: torch.Tensor | None) -> tuple[dict, SideLogps]:
        policy = SideLogps.from_sequences(*sequence_logps(model, batch))
        reference = self.reference_logps(model, batch, kept) if self.preference.uses_reference else None
        return preference_losses(self.preference, policy, reference), policy

    def compute_loss(self, model, batch) -> torch.Tensor:
        return self.pair_losses(model, batch, self.kept_train)[0]["loss"].mean()

    def metric_mode(self, name: str) -> str:
        return "min" if name in LOWER_IS_BETTER else "max"

    @torch.no_grad()
    def evaluate(self, model, loader, accelerator, *, desc: str = "eval") -> dict:
        """Every pair once (gather_for_metrics); the means of PAIR_METRICS, and the number of pairs."""
        was_training = model.training
        model.eval()
        rows, kept = [], self.kept.get(id(loader.dataset))
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            losses, policy = self.pair_losses(model, batch, kept)
            rows.append(accelerator.gather_for_metrics(pair_records(losses, policy)).cpu())
        model.train(was_training)
        return summarize_pairs(torch.cat(rows) if rows else torch.zeros(0, len(PAIR_METRICS)))

    # ---- results ----------------------------------------------------------------------------
    def extra_results(self, model, tokenizer, accelerator) -> dict:
        out = super().extra_results(model, tokenizer, accelerator)
        for sample in out.get("generations") or []:
            sample.pop("messages", None)
        reference = ("none (reference-free)" if not self.preference.uses_reference else
                     "the base model, adapter switched off" if self.recipe.method.name in ADAPTER_METHODS else
                     "a frozen copy of the pretrained model")
        out["preference"] = {**self.preference.model_dump(), "beta": self.preference.beta_value,
                             "reference_model": reference}
        if self.findings is not None:
            out["inspect"] = self.inspect_summary()
        return out

    def save_artifacts(self, run, model, eval_loaders: dict, accelerator) -> None:
        if self.findings is not None:
            write_text_atomic(run.path / "inspect.json", json.dumps(self.findings.to_dict(), indent=2) + "\n")


def frozen_copy(model):
    """The model for reference scoring: a copy in eval mode, with no gradients."""
    reference = copy.deepcopy(model)
    reference.eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference
