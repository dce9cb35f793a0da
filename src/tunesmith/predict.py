"""Use a finished run: predict labels for new texts, or evaluate on a new labelled file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from tunesmith.artifacts import RunDir
from tunesmith.data.encode import make_loader
from tunesmith.data.prepare import read_labelled
from tunesmith.errors import RunError
from tunesmith.models import check_weights_safe, load_for_classification
from tunesmith.recipe import load_recipe
from tunesmith.tasks import make_task
from tunesmith.train.precision import make_accelerator


def _load_classifier(model_dir: Path, trust_remote_code: bool):
    """A trained classifier: its config already holds the label map, so the head is restored as saved."""
    labels = json.loads((model_dir / "config.json").read_text()).get("id2label") or {}
    id2label = {int(k): v for k, v in labels.items()}
    return load_for_classification(
        model_dir, num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        trust_remote_code=trust_remote_code,
    )


class TrainedRun:
    """A run directory loaded for inference: its recipe, task, model and tokenizer."""

    def __init__(self, path: str | Path):
        from tunesmith.export.runtime import is_export_dir, load_export, read_manifest

        self.run = RunDir(path)
        self.export = read_manifest(path) if is_export_dir(path) else None  # a `tunesmith export` directory
        model_dir = self.run.path if self.export else self.run.require_model()
        if not self.run.recipe_path.is_file():
            raise RunError(f"{self.run.path}: recipe.yaml is missing; is this a tunesmith run directory?")
        self.recipe = load_recipe(self.run.recipe_path)
        if self.recipe.task != "classification":  # causal_lm / sft runs: see tunesmith.generate
            raise RunError(f"{self.run.path} is a {self.recipe.task} run: use tunesmith generate {self.run.path}")
        self.task = make_task(self.recipe)
        if self.export:  # merged: a plain HF model; onnx / int8: run by onnxruntime
            self.model, self.tokenizer = load_export(model_dir, self.recipe.trust_remote_code)
        else:
            check_weights_safe(model_dir, allow_pickle=self.recipe.allow_pickle)
            self.model, self.tokenizer = _load_classifier(model_dir, self.recipe.trust_remote_code)
        self.model.eval()
        self.task.use_trained_labels(self.model)
        self.task.fit_max_length(self.model.config)  # cut long texts as training did: at most the positions

    @torch.no_grad()
    def predict_frame(self, frame: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
        """Return the frame with `prediction` and one `prob_<label>` column per label."""
        self.model.eval()  # task.evaluate (evaluate_file) hands the model back in train mode: no dropout here
        dataset = self.task.encode(frame, self.tokenizer, with_labels=False)
        loader = make_loader(dataset, self.tokenizer, batch_size=batch_size, order="sequential")
        probs = []
        for batch in tqdm(loader, desc="predict", leave=False, disable=len(dataset) < 256):
            probs.append(torch.softmax(self.model(**batch).logits.float(), dim=-1))
        probs = torch.cat(probs).numpy() if probs else None
        out = frame.copy()
        names = self.task.labels.names
        out["prediction"] = [names[i] for i in self.task.predict_ids(probs)] if probs is not None else []  # tuned threshold
        for index, name in enumerate(names):
            out[f"prob_{name}"] = probs[:, index] if probs is not None else []
        return out

    def predict_texts(self, texts: list[str], pairs: list[str] | None = None) -> pd.DataFrame:
        frame = pd.DataFrame({"text": texts})
        if pairs is not None:
            frame["text_pair"] = pairs
        return self.predict_frame(frame)

    def read(self, path: str, *, require_label: bool, **overrides) -> pd.DataFrame:
        """Read a file with the run's data settings (format, header, columns), optionally overridden."""
        spec = self.recipe.data.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        return read_labelled(spec, path, require_label=require_label)

    def evaluate_file(self, path: str, batch_size: int = 64, **overrides) -> dict:
        frame = self.read(path, require_label=True, **overrides)
        self.task.labels.encode(frame, source=path)  # unknown labels: clear error naming the line
        dataset = self.task.encode(frame, self.tokenizer)
        loader = make_loader(dataset, self.tokenizer, batch_size=batch_size, order="by_length")
        accelerator = make_accelerator("fp32", cpu=not torch.cuda.is_available())
        model, loader = accelerator.prepare(self.model, loader)
        return self.task.evaluate(model, loader, accelerator, desc="evaluate")
