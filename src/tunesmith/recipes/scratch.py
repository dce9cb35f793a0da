"""The scratch baseline: the same architecture, randomly initialised, trained with the same recipe and budget.

It answers "did the pretrained weights help?". The model directory's config is instantiated with fresh
weights (AutoConfig + the config's own architecture class, seeded with train.seed), saved next to the
tokenizer in a temporary directory, and `finetune` trains it with the run's recipe: same data,
splits, epochs/max_steps, optimizer, schedule and early stopping. Only the model, the output directory
(RUN/baselines/scratch, a run directory of its own with metrics.jsonl for the curves), the
baselines/report sections (off, so it does not recurse) and the method differ: random weights are all
trained (method full), whatever the run's method (freeze, LoRA...).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
import transformers
from transformers import AutoConfig, AutoModel

from tunesmith.config.recipe import validate_recipe
from tunesmith.models import resolve_model
from tunesmith.models.parent_run import clear_run_settings

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")
SUBDIR = Path("baselines") / "scratch"


def scratch_recipe(recipe, model_dir: Path, output: Path):
    """The run's recipe with another model and output, and no baselines, report or trackers of its own."""
    raw = recipe.model_dump(mode="json", exclude_unset=True)  # keys left unset stay unset (task checks)
    raw["model"] = str(model_dir)
    raw["output"] = str(output)
    raw["baselines"] = False
    raw.pop("init", None)  # random weights start from no run and watch none
    raw.pop("transfer", None)
    raw["overwrite"] = True  # RUN/baselines/scratch belongs to the run: a finished one of an earlier run is replaced
    if isinstance(raw.get("method"), dict):  # every weight is random: train them all (no frozen layers, no LoRA)
        raw["method"] = {"name": "full", **{key: raw["method"][key] for key in ("gradient_checkpointing", "compile")
                                            if key in raw["method"]}}
    if raw.get("resume") is True:  # a scratch run may not have started yet: resume only if it has a checkpoint
        raw["resume"] = "auto"
    raw["report"] = {**raw.get("report", {}), "html": False, "trackers": []}
    return validate_recipe(raw, source="scratch baseline recipe")


def random_init_dir(model_dir: Path, dest: Path, *, seed: int, trust_remote_code: bool = False) -> Path:
    """Write `model_dir`'s architecture with random weights, plus its tokenizer files, to `dest`."""
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    clear_run_settings(config)  # model: an earlier run: its task's threshold, scaling... are not the scratch run's
    architecture = (getattr(config, "architectures", None) or [None])[0]
    model_class = getattr(transformers, architecture, None) if architecture else None
    torch.manual_seed(seed)
    if model_class is not None:
        model = model_class(config)
    else:
        model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    dest.mkdir(parents=True, exist_ok=True)
    for path in Path(model_dir).iterdir():  # tokenizer, vocabulary, chat template...: everything but weights
        if path.is_file() and path.name != "config.json" and not path.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy(path, dest / path.name)
    model.save_pretrained(dest, safe_serialization=True)
    return dest


def train_from_scratch(recipe, run_path: Path, *, finetune: Callable, echo: Callable[[str], None] = print) -> dict:
    """Train the scratch baseline into RUN/baselines/scratch with `finetune` (recipes/finetune.py)
    -> {"splits": {split: metrics}, "run": {...}}."""
    run_path = Path(run_path)
    output = run_path / SUBDIR
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".scratch-init-", dir=output.parent))
    echo(f"scratch baseline: {recipe.model} with random weights, same recipe, into {output}")
    try:
        init = random_init_dir(resolve_model(recipe.model), staging, seed=recipe.train.seed,
                               trust_remote_code=recipe.trust_remote_code)
        recorded = Path(recipe.output) / SUBDIR  # = output, unless the run trains in RUN/.overwrite (run_claim.py)
        result = finetune(scratch_recipe(recipe, init, recorded), echo=lambda line: echo(f"scratch: {line}"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    splits = {name: {k: v for k, v in result[name].items() if not isinstance(v, dict)}
              for name in ("validation", "test") if isinstance(result.get(name), dict)}
    info = {"run": str(SUBDIR), "best_step": result["best"]["step"], "steps": result["steps"],
            "stop_reason": result["stop_reason"], "train_s": result.get("timing", {}).get("train_s")}
    return {"splits": splits, "run": info}
