"""/v1/predict: a finished run (or export) of a predicting task behind the dynamic batcher. The numbers are
`tunesmith predict`'s: the same TrainedRun.predict_frame, the columns the task returns turned into JSON:

    prediction            -> "prediction" (the label; multi_label: labels joined; regression: the value)
    prob_<label>          -> "scores": {label: probability}
    prediction_<target>   -> "values": {target: value}            (regression with several targets)
    entities (JSON text)  -> "entities": [{entity_group, word, start, end, score}]  (character offsets)
    tags (space-joined)   -> "tags": [...] (one per word)
"""

from __future__ import annotations

import json
import math

import pandas as pd

INPUT_COLUMNS = {"text", "text_pair", "line"}


def plain(value):
    """A JSON-ready copy of a frame cell (numpy scalars -> Python numbers)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def prediction_rows(frame: pd.DataFrame) -> list[dict]:
    rows = []
    for record in frame.to_dict(orient="records"):
        row: dict = {}
        for column, value in record.items():
            if column in INPUT_COLUMNS:
                continue
            if column.startswith("prob_"):
                row.setdefault("scores", {})[column[len("prob_"):]] = plain(value)
            elif column.startswith("prediction_"):
                row.setdefault("values", {})[column[len("prediction_"):]] = plain(value)
            elif column == "entities":
                row["entities"] = json.loads(value)
            elif column == "tags":
                row["tags"] = value.split()
            else:
                row[column] = plain(value)
        rows.append(row)
    return rows


class PredictService:
    """A TrainedRun answering lists of texts; `predict` is one forward pass over all of them (batched by the
    caller). Only the batcher's worker thread calls it."""

    kind = "predict"

    def __init__(self, run, name: str):
        self.run, self.name = run, name
        self.task = run.recipe.task
        self.paired = "text_pair" in run.recipe.data.columns  # trained on pairs: every request sends text_pairs
        self.source = "export:" + run.export.get("format", "?") if run.export else "run"

    def predict(self, items: list[tuple[str, str | None]]) -> list[dict]:
        """One pass over (text, second text or None) items."""
        frame = pd.DataFrame({"text": [text for text, _ in items]})
        if self.paired:
            frame["text_pair"] = [pair for _, pair in items]
        return prediction_rows(self.run.predict_frame(frame, batch_size=max(len(items), 1)))

    def predict_batch(self, requests: list[list[tuple[str, str | None]]]) -> list[list[dict]]:
        """Several requests' items in one pass; each request gets its own rows back, in order."""
        rows = self.predict([item for items in requests for item in items])
        out, start = [], 0
        for texts in requests:
            out.append(rows[start:start + len(texts)])
            start += len(texts)
        return out
