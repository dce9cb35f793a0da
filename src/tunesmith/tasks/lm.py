"""What the two language-model tasks (causal_lm, sft) share: the model, the loss, evaluation, samples.

- Model: AutoModelForCausalLM (fp32) + a tokenizer that always has a pad token (eos when it had none).
  Padding is never found by comparing ids with the pad id: batches carry explicit -100 labels.
- Loss: the shifted cross-entropy over the tokens whose label is not -100, projected to the vocabulary a chunk
  of target tokens at a time (tasks/lm_loss.py, lm.loss_chunk): equal to the model's own loss, no full logits.
- Evaluation: the summed token loss and the number of predicted tokens, batch by batch (logits are
  dropped after each batch, so memory stays flat however long the validation set is):
  loss = mean token loss, perplexity = exp(loss). Early stopping uses loss (or perplexity), mode min.
- Before training, the pretrained model is evaluated on every held-out split ("baselines" in eval.json)
  and generates from a few fixed prompts; after training the best model generates from the same prompts
  (eval.json "generations": prompt, reference, before, after). Decoding there is greedy: reproducible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tunesmith.data.arrow_encode import default_num_proc
from tunesmith.data.packing import make_lm_loader
from tunesmith.errors import RecipeError
from tunesmith.models import load_for_causal_lm
from tunesmith.models.checks import position_limit
from tunesmith.models.generation import generate_texts
from tunesmith.tasks.lm_loss import can_chunk, chunked_lm_loss, row_loss_sums
from tunesmith.tasks.base import Task

log = logging.getLogger("tunesmith.tasks")

METRIC_NAMES = ("loss", "perplexity")


class LMTask(Task):
    """Base of causal_lm and sft; subclasses read and encode their data and pick sample prompts."""

    name = "lm"
    metric_names = METRIC_NAMES
    default_metric = "loss"
    summary_columns = ("loss", "perplexity", "tokens")
    inference = "generate"
    chat = False  # samples and `tunesmith generate` format prompts as chat turns

    def __init__(self, recipe):
        super().__init__(recipe)
        self.lm = recipe.lm
        self.splits = None
        self.before: dict[str, dict] = {}
        self.samples: list[dict] = []
        self.stats: dict[str, dict] = {}  # per split, what encode counted (eval.json "lm")

    @property
    def block_size(self) -> int:
        return self.lm.block_size or self.recipe.train.max_length

    @property
    def num_proc(self) -> int:
        """Processes that tokenize in parallel (lm.num_proc, else the CPUs available: data/arrow_encode.py)."""
        return self.lm.num_proc or default_num_proc()

    # ---- data -------------------------------------------------------------------------------
    def describe_splits(self, splits) -> str:
        counts = ", ".join(f"{name} {len(frame)}" for name, frame in splits.frames().items())
        return f"data: {counts} {self.unit}"

    unit = "rows"

    def _split_of(self, frame) -> str:
        if self.splits is not None:
            for name, candidate in self.splits.frames().items():
                if candidate is frame:
                    return name
        return "data"  # a file outside the splits (e.g. a new evaluation file)

    def encode_settings(self, tokenizer) -> dict | None:
        return {"max_length": self.recipe.train.max_length, "block_size": self.block_size}

    def encode_extras(self, split: str) -> dict:
        return {"stats": self.stats[split]} if split in self.stats else {}

    def restore_encode_extras(self, split: str, extras: dict) -> None:
        if "stats" in extras:
            self.stats[split] = extras["stats"]

    def make_loader(self, dataset, tokenizer, *, batch_size: int, order: str, seed: int = 0):
        return make_lm_loader(dataset, tokenizer, batch_size=batch_size, order=order, seed=seed)

    # ---- model ------------------------------------------------------------------------------
    def load_trained(self, model_dir: Path):
        return load_for_causal_lm(model_dir, trust_remote_code=self.recipe.trust_remote_code,
                                  allow_pickle=self.recipe.allow_pickle)

    def load_model(self, model_dir: Path):
        self.start_head()  # model: an earlier run: it must be a language model (its head is carried over)
        model, tokenizer = load_for_causal_lm(model_dir, trust_remote_code=self.recipe.trust_remote_code,
                                              allow_pickle=self.recipe.allow_pickle)
        limit = position_limit(model.config)
        longest = max(self.block_size, self.recipe.train.max_length)
        if limit is not None and longest > limit:
            key = "lm.block_size" if self.block_size >= self.recipe.train.max_length else "train.max_length"
            raise RecipeError(f"{key}: {longest} tokens is more than the model's {limit} positions")
        # saved with the model: batched generation (model.generate on a padded batch) needs left padding; every
        # tunesmith collator pads explicitly, so training does not depend on it (preflight: decoder_padding_side)
        tokenizer.padding_side = "left"
        return model, tokenizer

    # ---- training and evaluation ------------------------------------------------------------
    def compute_loss(self, model, batch) -> torch.Tensor:
        chunk = self.recipe.lm.loss_chunk
        if chunk and can_chunk(model):  # tasks/lm_loss.py: equal to the model's own loss, without full logits
            return chunked_lm_loss(model, batch, chunk)
        return model(**batch, use_cache=False).loss

    def metric_mode(self, name: str) -> str:
        return "min"

    @torch.no_grad()
    def evaluate(self, model, loader, accelerator, *, desc: str = "eval") -> dict:
        """Token-weighted loss and perplexity; per batch only two numbers per row are kept."""
        was_training = model.training
        model.eval()
        totals = torch.zeros(2, dtype=torch.float64)
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            sums, counts = row_loss_sums(model, batch, self.recipe.lm.loss_chunk)
            rows = torch.stack([sums.double(), counts.double()], dim=1)
            totals += accelerator.gather_for_metrics(rows).sum(0).cpu()
        if was_training:
            model.train()
        loss_sum, count = float(totals[0]), int(totals[1])
        loss = loss_sum / count if count else float("nan")
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)) if count else float("nan"), "tokens": count}

    # ---- before / after ---------------------------------------------------------------------
    def before_training(self, model, tokenizer, eval_loaders: dict, accelerator, *, train_data=None) -> None:
        """The pretrained model: held-out loss/perplexity, and generations from the sample prompts."""
        self.before = {name: self.evaluate(model, loader, accelerator, desc=f"{name} (pretrained)")
                       for name, loader in eval_loaders.items()}
        self.generate_before(model, tokenizer, accelerator)

    def generate_before(self, model, tokenizer, accelerator) -> None:
        """Generations of the pretrained model from the sample prompts (eval.json "generations": before)."""
        prompts = self.sample_prompts()
        if prompts and generates_here(accelerator):
            texts = self._generate(accelerator.unwrap_model(model), tokenizer,
                                   [p.get("messages") or p["prompt"] for p in prompts])  # dpo: a whole chat
            self.samples = [{**p, "before": text} for p, text in zip(prompts, texts)]

    def baselines(self, split_names: list[str]) -> dict:
        """The pretrained model on each held-out split (before any training)."""
        return {name: {"pretrained": self.before[name]} for name in split_names if name in self.before}

    def extra_results(self, model, tokenizer, accelerator) -> dict:
        """eval.json additions: generations of the best model next to the pretrained ones, token counts."""
        if self.samples and generates_here(accelerator):
            texts = self._generate(accelerator.unwrap_model(model), tokenizer,
                                   [s.get("messages") or s["prompt"] for s in self.samples])
            for sample, text in zip(self.samples, texts):
                sample["after"] = text
        return {
            "generations": self.samples,
            "generation_settings": {"decoding": "greedy", "max_new_tokens": self.lm.sample_max_new_tokens,
                                "chat": self.chat},
            "lm": {"block_size": self.block_size, "max_length": self.recipe.train.max_length,
                   **self.encode_summary()},
        }

    def encode_summary(self) -> dict:
        return {}

    def sample_prompts(self) -> list[dict]:
        """[{prompt, reference}]: lm.sample_prompts, else taken from the first validation examples."""
        if self.lm.sample_prompts is not None:
            return [{"prompt": p, "reference": None} for p in self.lm.sample_prompts]
        if self.splits is None:
            return []
        unique: dict = {}
        for prompt in self.default_prompts(self.splits.validation):  # the first example of each distinct prompt
            if len(unique) >= self.lm.num_samples:
                break  # the validation split is read only as far as the prompts need
            unique.setdefault(prompt["prompt"], prompt)
        return list(unique.values())[: self.lm.num_samples]

    def default_prompts(self, frame) -> Iterable[dict]:
        """{prompt, reference} from the split's examples, in order (an iterator is read only as far as needed)."""
        raise NotImplementedError

    def chat_template(self, tokenizer) -> str | None:
        return None

    def _generate(self, model, tokenizer, prompts: list[str]) -> list[str]:
        return generate_texts(model, tokenizer, prompts, chat_template=self.chat_template(tokenizer),
                              max_new_tokens=self.lm.sample_max_new_tokens, temperature=0.0,
                              seed=self.recipe.train.seed)


def generates_here(accelerator) -> bool:
    """Whether this process generates the sample texts: the main one; under FSDP every process, since each
    forward pass gathers the weight shards from all of them (greedy decoding takes the same steps on each)."""
    return accelerator.is_main_process or bool(getattr(accelerator, "is_fsdp2", False))
