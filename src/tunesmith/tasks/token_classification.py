"""Token classification (NER and other tagging): a tag for every word, scored by entity (seqeval, IOB2).

- Data: CoNLL files (`data.format: conll`, `data.tag_scheme` converted to IOB2) or jsonl lists of tokens and
  tags (data/token_data.py); the tag set is every B-/I- tag of the training types plus O.
- Model: AutoModelForTokenClassification with id2label / label2id from the tag names, so a run's RUN/model is
  what `transformers.pipeline("token-classification", model=RUN/model)` loads.
- Encoding (data/token_encode.py): words pre-split for a fast tokenizer; the first sub-token of a word carries
  its tag (or every one, `token_classification.label_all_tokens`); a sentence longer than train.max_length is
  cut into windows overlapping by `token_classification.stride` sub-tokens, every window a training row.
- Evaluation (evaluation/token_decode.py): the windows are stitched back to one prediction per word, repaired to
  valid IOB2 (an I-X not continuing X becomes B-X), then scored by evaluation/token_classification.py:
  entity precision / recall / F1 (strict IOB2), token accuracy, per type and the type confusion.
- Predict: raw text split into words with character offsets, entities as the HF pipeline's "simple"
  aggregation gives them (`entities` JSON, per-word `tags`, and a readable `prediction`).
- Baselines: the majority tag and a CRF over word features (baselines/token_baselines.py).
"""

from __future__ import annotations

import hashlib
import inspect as source_inspect
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tunesmith.artifacts import write_text_atomic
from tunesmith.baselines.token_baselines import token_baselines
from tunesmith.data import token_encode
from tunesmith.data.encode import EncodedDataset, make_loader
from tunesmith.data.findings import promote_failures
from tunesmith.data.token_data import load_token_splits, read_token_file
from tunesmith.data.token_encode import (IGNORE, TokenCollator, check_fast_tokenizer, document_neighbours,
                                         encode_words, in_length_order, joined_spans, split_words)
from tunesmith.data.token_stats import inspect_token_splits
from tunesmith.errors import DataError
from tunesmith.evaluation.token_classification import BOUNDED_METRICS, METRIC_NAMES, entity_metrics, metric_mode
from tunesmith.evaluation.token_decode import decode_words, entity_groups, stitch
from tunesmith.inspection import check_failures, tokenizer_for
from tunesmith.models import load_for_classification, load_trained_classifier
from tunesmith.tasks.base import Task

REPORT_SENTENCES = 200  # validation sentences saved for the report (RUN/predictions_validation.jsonl)


class WordDataset(EncodedDataset):
    """Features of rows to predict, with each row's text and its words' character spans."""

    def __init__(self, features: list[dict], texts: list[str], spans: list[list[tuple[int, int]]]):
        super().__init__(features)
        self.texts, self.spans = texts, spans


class TokenClassificationTask(Task):
    name = "token_classification"
    metric_names = METRIC_NAMES
    default_metric = "f1"
    bounded_metrics = BOUNDED_METRICS
    summary_columns = ("loss", "f1", "precision", "recall", "token_accuracy")
    random_held_out = "tagged sentences"
    saves_final_outputs = True  # predictions_<split> files: the final evaluation's (self.newest)
    exportable = True

    def __init__(self, recipe):
        super().__init__(recipe)
        self.spec = recipe.token_classification
        self.splits = None
        self.tag_names: list[str] | None = None
        self.inspection = None  # TokenInspection (data/token_stats.py)
        self.newest: dict[int, tuple] = {}  # id(loader) -> its newest evaluation's (sentence ids, gold, predicted)
        self._baselines: dict | None = None

    # ---- data -------------------------------------------------------------------------------
    def load_data(self):
        self.check_random_held_out()
        self.splits = load_token_splits(self.recipe.data, seed=self.recipe.train.seed, token_spec=self.spec)
        self.tag_names = list(self.splits.tag_names)
        return self.splits

    def describe_splits(self, splits) -> str:
        types = sorted({name[2:] for name in splits.tag_names if name != "O"})
        words = sum(len(tokens) for tokens in splits.train["tokens"])
        return (f"data: {', '.join(f'{n} {len(f)}' for n, f in splits.frames().items())} sentences "
                f"({words} training words); {len(types)} entity types: {', '.join(types)}")

    def read_rows(self, spec, path: str, *, labelled: bool):
        return read_token_file(spec, path, require_tags=labelled, invalid_sequences=self.spec.invalid_sequences)

    def inspect_data(self, splits, tokenizer, echo) -> None:
        """Tag counts, invalid sequences repaired, sentences cut into windows (data/token_stats.py)."""
        if not self.recipe.inspect.enabled:
            return
        self.inspection = inspect_token_splits(splits, tokenizer, self.max_length)
        promote_failures(self.inspection.findings, self.recipe.inspect.fail_on)
        self.inspection.echo_findings(echo)
        check_failures(self.inspection)

    def inspect_recipe(self, *, tokens: bool = True):
        splits = self.load_data()
        tokenizer = tokenizer_for(self.recipe.model, self.recipe.trust_remote_code)[0] if tokens else None
        report = inspect_token_splits(splits, tokenizer, self.recipe.train.max_length if tokens else None)
        promote_failures(report.findings, self.recipe.inspect.fail_on)
        return report

    def inspect_summary(self) -> dict | None:
        return None if self.inspection is None else self.inspection.summary()

    # ---- model ------------------------------------------------------------------------------
    def load_model(self, model_dir: Path):
        names = self.tag_names
        model, tokenizer = load_for_classification(
            model_dir, num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={name: i for i, name in enumerate(names)}, head="token",
            trust_remote_code=self.recipe.trust_remote_code, allow_pickle=self.recipe.allow_pickle,
            start=self.start_head(dict(enumerate(names))))
        check_fast_tokenizer(tokenizer, self.recipe.model)
        self.fit_max_length(model.config, announce=True)
        return model, tokenizer

    def load_trained(self, model_dir: Path):
        model, tokenizer = load_trained_classifier(model_dir, trust_remote_code=self.recipe.trust_remote_code,
                                                   allow_pickle=self.recipe.allow_pickle)
        check_fast_tokenizer(tokenizer, str(model_dir))
        return model, tokenizer

    def use_trained(self, model) -> None:
        id2label = {int(i): name for i, name in model.config.id2label.items()}
        self.tag_names = [id2label[i] for i in range(len(id2label))]

    # ---- encoding and batching -------------------------------------------------------------
    def tag_ids(self, frame) -> list[list[int]]:
        """Each row's tags as ids; a tag the model does not know is a DataError naming the file and line."""
        index = {name: i for i, name in enumerate(self.tag_names)}
        out = []
        lines = frame["line"].tolist() if "line" in frame.columns else [None] * len(frame)
        for tags, line in zip(frame["tags"], lines):
            unknown = [tag for tag in tags if tag not in index]
            if unknown:
                where = f"{frame.attrs.get('source', 'data')}" + (f", line {line}" if line is not None else "")
                raise DataError(f"{where}: tag '{unknown[0]}' is not one the model was trained with "
                                f"({', '.join(self.tag_names)})")
            out.append([index[tag] for tag in tags])
        return out

    def encode(self, frame, tokenizer, *, with_labels: bool = True) -> EncodedDataset:
        if "tokens" in frame.columns:
            words = [list(tokens) for tokens in frame["tokens"]]
            texts, spans = zip(*(joined_spans(w) for w in words)) if words else ((), ())
        else:  # raw text (tunesmith predict --text)
            found = [split_words(str(text)) for text in frame["text"]]
            words = [[w for w, _, _ in row] for row in found]
            texts, spans = list(frame["text"].astype(str)), [[(s, e) for _, s, e in row] for row in found]
        inside = {i: self.tag_names.index("I-" + name[2:]) for i, name in enumerate(self.tag_names)
                  if name.startswith("B-") and "I-" + name[2:] in self.tag_names}
        neighbours = None
        if self.spec.context == "document" and "tokens" in frame.columns:  # raw text has no document
            documents = frame["document"].tolist() if "document" in frame.columns else [0] * len(frame)
            lines = frame["line"].tolist() if "line" in frame.columns else list(range(len(frame)))
            neighbours = document_neighbours(documents, lines)
        features = encode_words(tokenizer, words, self.tag_ids(frame) if with_labels else None,
                                max_length=self.max_length, stride=self.spec.stride,
                                label_all_tokens=self.spec.label_all_tokens, inside_of=inside,
                                neighbours=neighbours, context_tokens=self.spec.context_tokens)
        return EncodedDataset(features) if with_labels else WordDataset(features, list(texts), list(spans))

    def encode_settings(self, tokenizer) -> dict | None:
        if self.tag_names is None:
            return None
        encoder = hashlib.sha256(source_inspect.getsource(token_encode).encode()).hexdigest()
        return {"max_length": self.max_length, "stride": self.spec.stride, "tags": self.tag_names,
                "label_all_tokens": self.spec.label_all_tokens, "encoder": encoder, "context": self.spec.context,
                "context_tokens": self.spec.context_tokens}

    def make_loader(self, dataset, tokenizer, *, batch_size: int, order: str, seed: int = 0):
        """Labels padded with -100 (TokenCollator); an evaluation loader holds its rows longest first in the
        dataset itself, so gathered rows come back in the dataset's order (stitching reads it)."""
        if order == "by_length":
            dataset, order = in_length_order(dataset), "sequential"
        return make_loader(dataset, tokenizer, batch_size=batch_size, order=order, seed=seed,
                           collate_fn=TokenCollator(tokenizer))

    # ---- training and evaluation ------------------------------------------------------------
    def compute_loss(self, model, batch) -> torch.Tensor:
        return self.loss_sum(model, batch)[0] / batch["labels"].ne(IGNORE).sum().clamp(min=1)

    def loss_sum(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed cross-entropy over the labelled sub-tokens in fp32, the logits)."""
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()  # bf16 under autocast
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
        return loss, logits

    def metric_mode(self, name: str) -> str:
        return metric_mode(name)

    @torch.no_grad()
    def word_predictions(self, model, loader, accelerator=None, *, desc: str = "eval") -> tuple[dict, float]:
        """({sentence: probability row per word}, mean loss per labelled sub-token) over a loader whose dataset
        is in batch order: each gathered batch is matched to the dataset's next features."""
        was_training = model.training
        model.eval()
        features = loader.dataset.features
        compact, rows, seen, loss, count = [], [], 0, 0.0, 0
        show = (accelerator is None or accelerator.is_local_main_process) and len(loader) > 1  # not per served request
        for batch in tqdm(loader, desc=desc, leave=False, disable=not show):
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()  # bf16 under autocast
            probs = torch.softmax(logits, dim=-1)
            probs = torch.nn.functional.pad(probs, (0, 0, 0, self.max_length - probs.shape[1]))
            losses = row_losses(logits, batch["labels"]) if "labels" in batch else probs.new_zeros(len(probs), 2)
            if accelerator is not None:  # every window once, from every process (loss included)
                probs, losses = accelerator.gather_for_metrics((probs, losses))
            loss, count = loss + float(losses[:, 0].sum()), count + int(losses[:, 1].sum())
            for window in probs.cpu().numpy():
                feature, keep = features[seen], np.flatnonzero(np.array(features[seen]["word_index"]) >= 0)
                compact.append({"sentence": feature["sentence"], "n_words": feature["n_words"],
                                "word_index": [feature["word_index"][i] for i in keep],
                                "word_edge": [feature["word_edge"][i] for i in keep]})
                rows.append(window[keep])
                seen += 1
        if seen != len(features):
            raise RuntimeError(f"{desc}: {seen} windows came back from {len(features)}")
        if was_training:
            model.train()
        return stitch(compact, rows), loss / max(count, 1)

    def evaluate(self, model, loader, accelerator, *, desc: str = "eval") -> dict:
        """Entity precision / recall / F1, token accuracy, per type: every word scored exactly once."""
        words, loss = self.word_predictions(model, loader, accelerator, desc=desc)
        gold_of = {f["sentence"]: f["word_tags"] for f in loader.dataset.features}
        sentences = sorted(words)
        gold = [[self.tag_names[t] for t in gold_of[s]] for s in sentences]
        predicted = [decode_words(words[s], self.tag_names)[0] for s in sentences]
        self.newest[id(loader)] = (sentences, gold, predicted)
        metrics = entity_metrics(gold, predicted)
        metrics["loss"] = loss
        return metrics

    # ---- results ----------------------------------------------------------------------------
    def baselines(self, split_names: list[str]) -> dict:
        """The majority tag and a CRF over word features, fitted once for every split."""
        if self._baselines is None:
            frames = self.splits.frames()
            held_out = {name: frame for name, frame in frames.items() if name != "train"}
            spec = self.recipe.baselines
            self._baselines = token_baselines(frames["train"], held_out, majority=spec.majority, crf=spec.tfidf,
                                              seed=self.recipe.train.seed)
        return {name: self._baselines.get(name, {}) for name in split_names}

    def extra_results(self, model, tokenizer, accelerator) -> dict:
        out = {"token_classification": {"tags": self.tag_names, **self.spec.model_dump()}}
        if self.inspection is not None:
            out["inspect"] = self.inspect_summary()
        return out

    def save_artifacts(self, run, model, eval_loaders: dict, accelerator) -> None:
        """RUN/inspect.json; RUN/predictions_validation.jsonl (the first sentences' words, gold and predicted
        tags) for the report."""
        if self.inspection is not None:
            write_text_atomic(run.path / "inspect.json", json.dumps(self.inspection.to_dict(), indent=2) + "\n")
        loader = eval_loaders.get("validation")
        if loader is None or id(loader) not in self.newest or self.splits is None:
            return
        sentences, gold, predicted = self.newest[id(loader)]
        tokens = self.splits.validation["tokens"].tolist()
        lines = [json.dumps({"sentence": s, "tokens": list(tokens[s]), "gold": g, "predicted": p}, ensure_ascii=False)
                 for s, g, p in list(zip(sentences, gold, predicted))[:REPORT_SENTENCES]]
        write_text_atomic(run.path / "predictions_validation.jsonl", "\n".join(lines) + "\n")

    # ---- using a finished run ---------------------------------------------------------------
    def predictions(self, model, loader) -> dict:
        """`entities` (JSON list of {entity_group, word, start, end, score}), `tags` (one per word, space-joined)
        and `prediction` (the entities, readable: "John Smith (PER); Paris (LOC)")."""
        dataset = loader.dataset
        words, _ = self.word_predictions(model, loader, desc="predict")
        columns = {"prediction": [], "entities": [], "tags": []}
        for row, (text, spans) in enumerate(zip(dataset.texts, dataset.spans)):
            tags, scores = decode_words(words.get(row, [None] * len(spans)), self.tag_names)
            groups = entity_groups(text, spans, tags, scores)
            columns["entities"].append(json.dumps(groups, ensure_ascii=False))
            columns["tags"].append(" ".join(tags))
            columns["prediction"].append("; ".join(f"{g['word']} ({g['entity_group']})" for g in groups) or "-")
        return columns


def row_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, 2) float64 rows: each window's summed cross-entropy over its labelled sub-tokens, and their number."""
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    return torch.stack([per_token.sum(1).double(), labels.ne(IGNORE).sum(1).double()], dim=1)
