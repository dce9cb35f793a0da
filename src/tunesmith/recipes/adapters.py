"""`tunesmith predict RUN_A RUN_B ... --text/--input`: several LoRA/DoRA runs on one base model in memory.

    runs = SwitchedRuns(["runs/sst2", "runs/spam"])
    frame = runs.predict_texts(["free entry, text WIN now"])   # columns sst2.prediction, sst2.prob_pos, spam.prediction, ...

Each run must be a finished LoRA/DoRA run of a predict task (RUN/adapter, RUN/model/config.json, RUN/recipe.yaml),
and all must sit on the same base model: the sha256 of its weights, recorded in RUN/adapter/tunesmith_base.json
when the adapter was saved, must be equal (methods/adapters.py), else the runs are refused. The base is loaded
once, every run's adapter and head on top of it (methods/adapter_bank.py); for each run its adapter is switched
on and its own task (label map, tuned threshold, target scaling from RUN/model/config.json; max_length from its
recipe) encodes the rows and decodes the outputs. The base's tokenizer encodes for all of them (the runs were
trained with it). `--input` is read with the first run's data settings. Each run's columns are prefixed with its
name: the run directory's name, or the path as given when two names are equal.

The predictions are those of each run's adapter on the base, bit for bit; RUN/model (the adapter merged into the
base, what `tunesmith predict RUN` loads) gives the same labels with probabilities equal up to float rounding.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from tunesmith.artifacts import RunDir
from tunesmith.errors import RunError
from tunesmith.methods.adapter_bank import check_shared_base, load_bank
from tunesmith.methods.adapters import read_saved_adapter
from tunesmith.models.exported import is_export_dir
from tunesmith.recipes.predict import prediction_columns, read_run_recipe
from tunesmith.tasks import make_task


class AdapterRun:
    """One run of a switched set: its recipe, its task with what training stored restored, its saved adapter."""

    def __init__(self, path, name: str, adapter_name: str):
        from transformers import AutoConfig

        self.run = RunDir(path)
        if is_export_dir(path):
            raise RunError(f"{path} is an export: its adapter is merged into its weights; give the run directory "
                           f"it came from to switch adapters")
        self.run.require_model()
        self.recipe = read_run_recipe(self.run)
        self.task = make_task(self.recipe)
        if self.task.inference != "predict":
            raise RunError(f"{self.run.path} is a {self.recipe.task} run: switching adapters predicts with "
                           f"classification-family runs; use tunesmith {self.task.inference} {self.run.path}")
        self.adapter = read_saved_adapter(path)
        config = AutoConfig.from_pretrained(self.run.model_dir, local_files_only=True,
                                            trust_remote_code=self.recipe.trust_remote_code)
        self.task.use_trained(SimpleNamespace(config=config))  # labels, threshold, scaling: this run's own
        self.task.fit_max_length(config)
        self.name = name
        self.adapter_name = adapter_name  # PEFT's name for it (no dots allowed there)


class SwitchedRuns:
    """The base model once, every run's adapter on it; predictions of each run, one set of columns per run."""

    def __init__(self, paths: list):
        if len(paths) < 2:
            raise RunError("switching adapters needs two runs or more; for one run use tunesmith predict RUN")
        names = run_names(paths)
        self.runs = [AdapterRun(path, name, f"run{index}") for index, (path, name) in enumerate(zip(paths, names))]
        adapters = [run.adapter for run in self.runs]
        self.base_sha256 = check_shared_base(adapters)
        self.model, self.tokenizer = load_bank(adapters, [run.adapter_name for run in self.runs],
                                               trust_remote_code=self.runs[0].recipe.trust_remote_code)

    @property
    def first(self) -> AdapterRun:
        return self.runs[0]

    def predict_frame(self, frame: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
        """The frame with `<run name>.<column>` for every prediction column of every run."""
        out = frame.copy()
        for run in self.runs:
            for column, values in self.predictions(run, frame, batch_size).items():
                out[f"{run.name}.{column}"] = values
        return out

    def predictions(self, run: AdapterRun, frame: pd.DataFrame, batch_size: int = 64) -> dict:
        """One run's prediction columns, its adapter switched on."""
        self.model.set_adapter(run.adapter_name, inference_mode=True)
        return prediction_columns(run.task, self.model, self.tokenizer, frame, batch_size)

    def per_run(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """{run name: the input columns and that run's prediction columns, unprefixed} of a predicted frame."""
        def owner(column: str) -> str | None:  # the longest run name prefixing it ("a.b" before "a")
            names = [run.name for run in self.runs if column.startswith(f"{run.name}.")]
            return max(names, key=len) if names else None

        owners = {column: owner(column) for column in frame.columns}
        inputs = [c for c, name in owners.items() if name is None]
        return {run.name: frame[inputs + [c for c, name in owners.items() if name == run.name]]
                .rename(columns=lambda c, p=f"{run.name}.": c.removeprefix(p)) for run in self.runs}

    def predict_texts(self, texts: list[str]) -> pd.DataFrame:
        return self.predict_frame(pd.DataFrame({"text": texts}))

    def read(self, path: str, **overrides) -> pd.DataFrame:
        """The file read with the first run's data settings (format, header, columns), optionally overridden."""
        run = self.first
        spec = run.recipe.data.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        frame = run.task.read_rows(spec, path, labelled=False)
        frame.attrs["source"] = str(path)
        return frame


def run_names(paths: list) -> list[str]:
    """Each run's column prefix: its directory's name, or the paths as given when two names are equal."""
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) < len(resolved):
        twice = next(str(p) for p, r in zip(paths, resolved) if resolved.count(r) > 1)
        raise RunError(f"{twice} is given twice: name each run once")
    names = [r.name for r in resolved]
    return names if len(set(names)) == len(names) else [str(p).rstrip("/") for p in paths]
