"""From the recipe's `data:` section to train / validation / test tables with numeric targets (task: regression).

`data.columns.label` names the target column, or lists several (`label: [valence, arousal]`); each becomes a
role `target_<k>` of the frame. The validation split is a plain seeded shuffle (targets are not classes to
stratify by). Targets are parsed and checked by data/targets.py, each problem one DataError naming file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.data.prepare import assemble_splits, read_with_spec
from tunesmith.data.targets import parse_targets
from tunesmith.errors import DataError


@dataclass
class TargetSplits:
    """Tables with columns text[, text_pair], target_0..K-1, line; `y` holds each split's targets (N x K)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    names: list[str]  # the targets as the user named them (column names, or "score" for an index)
    y: dict[str, np.ndarray]
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def frames(self) -> dict[str, pd.DataFrame]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: frame for name, frame in named.items() if frame is not None}


def target_columns(spec) -> tuple[dict, list[str], list[str]]:
    """(read_table's role -> column mapping, the target roles, the targets' names)."""
    if "label" not in spec.columns:
        raise DataError("data.columns: regression needs a 'label' column holding the numeric target, "
                        "e.g. columns: {text: text, label: score}")
    label = spec.columns["label"]
    targets = label if isinstance(label, list) else [label]
    roles = [f"target_{k}" for k in range(len(targets))]
    columns = {role: column for role, column in spec.columns.items() if role != "label"}
    columns.update(zip(roles, targets))
    names = [str(t) if isinstance(t, str) else ("target" if len(targets) == 1 else f"target_{t}") for t in targets]
    return columns, roles, names


def read_targets_file(spec, path: str, *, fit: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """One file read with the recipe's settings -> (frame, N x K targets). Targets are not `required` of the
    reader: an empty one is parse_targets' error, which names the target."""
    columns, roles, names = target_columns(spec)
    frame = read_with_spec(spec, path, columns=columns, required=("text",))
    return frame, parse_targets(frame, roles, source=str(path), names=names, fit=fit)


def load_target_splits(spec, *, seed: int) -> TargetSplits:
    columns, roles, names = target_columns(spec)
    split = assemble_splits(spec, lambda path: read_with_spec(spec, path, columns=columns, required=("text",)),
                            seed=seed, stratify=False)  # targets are not classes to stratify by
    y = {name: parse_targets(frame, roles, source=split.file_of(name, spec.train), names=names, fit=name == "train")
         for name, frame in split.frames.items()}
    frames = split.frames
    return TargetSplits(frames["train"], frames["validation"], frames.get("test"), names, y, split.sources,
                        split.notes)
