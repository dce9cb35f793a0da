"""What the tasks on AutoModelForSequenceClassification share (classification, regression): one text or a text
pair in, the head's outputs out; a trained run's model restored with the head it was saved with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tunesmith.data.encode import EncodedDataset, encode_texts
from tunesmith.models import load_trained_classifier
from tunesmith.tasks.base import Task


class SequenceTask(Task):
    def load_trained(self, model_dir: Path):
        return load_trained_classifier(model_dir, trust_remote_code=self.recipe.trust_remote_code,
                                       allow_pickle=self.recipe.allow_pickle)

    def encode_rows(self, frame, tokenizer, labels) -> EncodedDataset:
        """Token ids of each row's text (and text_pair), cut to max_length tokens, with `labels` (or none)."""
        pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
        return encode_texts(tokenizer, frame["text"].tolist(), pairs, max_length=self.max_length, labels=labels)

    def loss_of(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch's N x K outputs (the tasks whose loss is their own: regression, multi_label)."""
        raise NotImplementedError(f"{self.name} computes its loss inside the model")

    @torch.no_grad()
    def gathered_outputs(self, model, loader, accelerator, *, desc: str = "eval") -> tuple[np.ndarray, np.ndarray, float]:
        """(N x K raw outputs, N x K gold labels as floats, mean loss_of per row) over a labelled loader, every
        example once (gather_for_metrics); K = len(self.names)."""
        was_training = model.training
        model.eval()
        outputs, golds, total, count = [], [], 0.0, 0
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            logits = outputs_of(model, batch)
            logits, labels = accelerator.gather_for_metrics((logits, batch["labels"].float()))
            if len(labels):  # the loss of the gathered rows: every example once, from every process
                total += float(self.loss_of(logits, labels)) * len(labels)
                count += len(labels)
            outputs.append(logits.cpu().numpy().reshape(len(logits), -1))
            golds.append(labels.cpu().numpy().reshape(len(labels), -1))
        if was_training:
            model.train()
        width = len(self.names)
        return (np.concatenate(outputs) if outputs else np.zeros((0, width)),
                np.concatenate(golds) if golds else np.zeros((0, width)), total / max(count, 1))


def outputs_of(model, batch) -> torch.Tensor:
    """The model's N x K outputs for a batch (labels left out: the loss is the task's), in fp32."""
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()  # bf16 under autocast
