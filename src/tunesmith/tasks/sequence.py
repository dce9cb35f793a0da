"""What the tasks on AutoModelForSequenceClassification share (classification, regression): one text or a text
pair in, the head's outputs out; a trained run's model restored with the head it was saved with."""

from __future__ import annotations

from pathlib import Path

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
