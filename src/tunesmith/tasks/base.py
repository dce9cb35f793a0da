"""What every task offers the run (run.py) beyond its own data, model, loss and metrics: hooks with defaults.

A task subclasses `Task` and overrides what it needs; run.py calls the hooks unconditionally.
"""

from __future__ import annotations

from tunesmith.data.encode import make_loader


class Task:
    name = "task"
    max_length: int  # tokens an example is cut to: train.max_length (classification: at most the model's positions)

    def describe_splits(self, splits) -> str:
        """One line on the data, printed before the model loads."""
        counts = ", ".join(f"{name} {len(frame)}" for name, frame in splits.frames().items())
        return f"data: {counts} rows"

    def encode_settings(self, tokenizer) -> dict | None:
        """Everything besides the rows and the tokenizer that changes what `encode` returns, as a JSON-able
        dict: part of the token cache key (data/token_cache.py). None (the default): never cached, so a new
        task is cached only once it declares its settings here."""
        return None

    def encode_extras(self, split: str) -> dict:
        """JSON-able notes `encode` kept about this split (e.g. token counts for eval.json), saved with the
        cached features and handed back to `restore_encode_extras` on a cache hit."""
        return {}

    def restore_encode_extras(self, split: str, extras: dict) -> None:
        """A cache hit: put back what `encode` would have noted about this split."""

    def make_loader(self, dataset, tokenizer, *, batch_size: int, order: str, seed: int = 0):
        """Batches of the encoded data (default: dynamic padding with the tokenizer)."""
        return make_loader(dataset, tokenizer, batch_size=batch_size, order=order, seed=seed)

    def resolved_recipe(self, recipe):
        """The recipe as the run used it, for RUN/recipe.yaml: `recipe`, or a copy with the values the task
        changed for the model (classification: train.max_length clamped to its positions). Never modified."""
        return recipe

    def before_training(self, model, tokenizer, eval_loaders: dict, accelerator) -> None:
        """Measure the model before any step (LM tasks: pretrained perplexity and generations)."""

    def extra_results(self, model, tokenizer, accelerator) -> dict:
        """More keys for eval.json after training."""
        return {}
