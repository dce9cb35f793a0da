"""Generate text with a causal_lm or sft run (`tunesmith generate RUN --prompt ...`); the decoding itself is
tunesmith.models.generation. sft runs format each prompt as a user turn with the chat template saved in the
run's tokenizer (the one training used); causal_lm runs continue the raw text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tunesmith.artifacts import RunDir
from tunesmith.errors import RunError
from tunesmith.models import check_weights_safe
from tunesmith.models.generation import generate_texts
from tunesmith.recipes.predict import read_run_recipe
from tunesmith.tasks import make_task


class TrainedLM:
    """A run directory of a generating task (causal_lm, sft) loaded for generation."""

    def __init__(self, path: str | Path):
        self.run = RunDir(path)
        model_dir = self.run.require_model()
        self.recipe = read_run_recipe(self.run)
        self.task = make_task(self.recipe)
        if self.task.inference != "generate":
            raise RunError(f"{self.run.path} is a {self.recipe.task} run; generate works with causal_lm and sft runs "
                           f"(use tunesmith {self.task.inference})")
        check_weights_safe(model_dir, allow_pickle=self.recipe.allow_pickle)
        self.model, self.tokenizer = self.task.load_trained(model_dir)
        self.model.eval()

    @property
    def chat(self) -> bool:
        return self.task.chat

    def generate(self, prompts: Sequence[str], *, chat: bool | None = None, **settings) -> list[str]:
        chat = self.chat if chat is None else chat
        template = self.tokenizer.chat_template if chat else None
        if chat and not template:
            raise RunError(f"{self.run.model_dir}: the tokenizer has no chat template; generate with --no-chat")
        return generate_texts(self.model, self.tokenizer, prompts, chat_template=template, **settings)
