"""A finished tunesmith run (or a merged export of one) as the start of a new run: `model: RUN`.

    find_parent_run("runs/sst2")   # ParentRun: RUN/model, its recipe and eval.json, or None for other models
    choose_head(parent, recipe.init, "classification", id2label)   # "kept" | "new" (or a clear error)
    parent.lineage("kept")         # eval.json "lineage": parent path, recipe hash, task, metrics, ancestors

What a run directory holds (artifacts.py): RUN/model (the best model and its tokenizer, chat template
included), RUN/recipe.yaml, RUN/eval.json (written last: a run without it has not finished). A merged export
(`tunesmith export RUN --format merged`, export/merged.py) is itself a plain model directory with export.json
naming its run; onnx and int8 exports hold no trainable weights and are refused. Naming RUN/model itself
counts as naming the run.

The body always comes from the run. The task head is kept when this run has the parent's task and label set
(init.head auto or keep), else freshly initialised: `load_body_only` builds the model from its config (the
library's own initialisation) and loads only the weights under the model's base prefix, so a head of the
same shape is not loaded by accident. tunesmith's own keys in the parent's config (a tuned threshold, the
positive label, target scaling) belong to the parent's task and are dropped (`clear_run_settings`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tunesmith.artifacts import is_run_dir, run_owning
from tunesmith.errors import ModelError, RecipeError, one_line

log = logging.getLogger("tunesmith.models")

LM_TASKS = ("causal_lm", "sft", "dpo")  # AutoModelForCausalLM; their head is the language-model head
RUN_SETTING_PREFIX = "tunesmith_"  # model config keys a task stores for its trained model
EXPORT_MANIFEST = "export.json"  # models/exported.py MANIFEST


@dataclass(frozen=True)
class ParentRun:
    """The facts of the run a new run starts from."""

    path: Path  # the run directory, or the merged export directory
    model_dir: Path
    recipe_path: Path
    eval: dict  # its eval.json ({} for an export whose run is gone)
    config: dict  # its model's config.json
    export: str | None = None  # "merged" when `model:` names an export

    @property
    def task(self) -> str:
        return str(self.eval.get("task") or recipe_task(self.recipe_path))

    @property
    def architecture(self) -> str:
        return str((self.config.get("architectures") or [self.config.get("model_type", "?")])[0])

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): str(v) for k, v in (self.config.get("id2label") or {}).items()}

    def recipe_sha256(self) -> str:
        return hashlib.sha256(self.recipe_path.read_bytes()).hexdigest()

    def lineage(self, head: str | None) -> dict:
        """eval.json "lineage": this parent, and its own ancestors (the parent's lineage, flattened)."""
        own = self.eval.get("lineage") if isinstance(self.eval.get("lineage"), dict) else None
        ancestors = ([{k: v for k, v in own.items() if k != "ancestors"}] + list(own.get("ancestors") or [])
                     if own else [])
        return {
            "parent": str(self.path.resolve()), "export": self.export, "recipe_sha256": self.recipe_sha256(),
            "task": self.task, "model": self.eval.get("model"), "architecture": self.architecture,
            "best": self.eval.get("best"), "validation": scalar_metrics(self.eval.get("validation")),
            "head": head, "ancestors": ancestors,
        }


def scalar_metrics(metrics) -> dict:
    """The numbers of a metrics block (no confusion matrices, per-class tables, generations)."""
    if not isinstance(metrics, dict):
        return {}
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def recipe_task(recipe_path: Path) -> str:
    import yaml

    try:
        raw = yaml.safe_load(recipe_path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"{recipe_path}: cannot read the run's recipe ({one_line(exc)})") from None
    return str(raw.get("task", "classification")) if isinstance(raw, dict) else "classification"


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read it ({one_line(exc)})") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return value


def looks_like_run(path: Path) -> bool:
    """A run directory, finished or not: its marker, or recipe.yaml with metrics.jsonl, eval.json or checkpoints."""
    return is_run_dir(path) or (path / "recipe.yaml").is_file() and (
        (path / "eval.json").is_file() or (path / "checkpoints").is_dir())


def find_parent_run(name_or_path) -> ParentRun | None:
    """The finished run (or merged export) `model:` names; None for a packaged name or a plain model directory.
    An unfinished run, or an onnx / int8 export, is a ModelError naming the path."""
    from tunesmith.models import PACKAGED

    path = Path(str(name_or_path)).expanduser()
    if str(name_or_path) in PACKAGED or not path.is_dir():
        return None
    if (path / EXPORT_MANIFEST).is_file():
        return export_parent(path)
    owner = run_owning(path / "config.json") if path.name == "model" else None
    if owner is not None:  # RUN/model itself: the run
        path = owner
    if not looks_like_run(path):
        return None
    missing = [name for name in ("eval.json", "recipe.yaml", "model/config.json") if not (path / name).is_file()]
    if missing:
        found = "only checkpoints" if (path / "checkpoints").is_dir() else "no " + ", no ".join(missing)
        raise ModelError(f"model: {path} is an unfinished tunesmith run ({found}): start from a run once it has "
                         f"finished (resume it with resume: true), or name another model")
    return ParentRun(path, path / "model", path / "recipe.yaml", read_json(path / "eval.json"),
                     read_json(path / "model" / "config.json"))


def export_parent(path: Path) -> ParentRun:
    manifest = read_json(path / EXPORT_MANIFEST)
    fmt = manifest.get("format")
    if fmt != "merged":
        raise ModelError(f"model: {path} is an {fmt} export, which holds no trainable weights: start from its "
                         f"run ({manifest.get('run')}) or from a merged export (tunesmith export RUN --format merged)")
    run_eval = Path(str(manifest.get("run", ""))) / "eval.json"
    result = read_json(run_eval) if manifest.get("run") and run_eval.is_file() else {}
    return ParentRun(path, path, path / "recipe.yaml", result, read_json(path / "config.json"), export="merged")


def check_start(model: str, init) -> None:
    """Before any data is read: a run named by `model:` has finished, and `init:` comes only with a run."""
    if find_parent_run(model) is None and init is not None:
        choose_head(None, init, "", None, model)


def parent_model_dir(name_or_path) -> Path | None:
    """resolve_model's answer for a run or export: its model directory (None: not a run)."""
    parent = find_parent_run(name_or_path)
    return parent.model_dir.resolve() if parent is not None else None


def choose_head(parent: ParentRun | None, init, task: str, id2label: dict | None, model: str) -> str | None:
    """How the head of a `task` run whose head has `id2label` (None: a language model) starts: "kept" (the
    parent's) or "new"; None when `model` is not a run. Impossible combinations are clear errors."""
    if parent is None:
        if init is not None:
            raise RecipeError(f"init: applies when model: names a finished tunesmith run; {model} is not one "
                              f"(a packaged or plain model starts with a new head anyway): remove init:")
        return None
    head = init.head if init is not None else "auto"
    if task in LM_TASKS:
        if parent.task not in LM_TASKS:
            raise ModelError(f"model: {parent.path} is a {parent.task} run ({parent.architecture}): a {task} run "
                             f"needs a language-model head, which it does not have; start from a causal_lm, sft "
                             f"or dpo run, or from a pretrained decoder")
        if head == "new":
            raise RecipeError(f"init.head: new: a {task} run's head is the language-model head, carried over "
                              f"with the body; remove init.head (or use keep)")
        return "kept"
    wanted = {int(k): str(v) for k, v in (id2label or {}).items()}
    if parent.task == task and parent.id2label == wanted:
        return "new" if head == "new" else "kept"
    if head == "keep":
        reason = (f"is a {parent.task} run, so it has no {task} head" if parent.task != task else
                  f"has the labels {list(parent.id2label.values())}, this run {list(wanted.values())}")
        raise RecipeError(f"init.head: keep: {parent.path} {reason}; use head: new (or auto) for a new head")
    return "new"


def clear_run_settings(config) -> None:
    """Drop what the parent's task stored in its model config (threshold, positive label, scaling, ...)."""
    for key in [k for k in vars(config) if k.startswith(RUN_SETTING_PREFIX)]:
        delattr(config, key)


def load_body_only(auto_class, model_dir: Path, trust_remote_code: bool, id2label: dict, label2id: dict,
                   extra: dict):
    """(model, loading info): `auto_class` built from `model_dir`'s config with the new label map (and `extra`
    config settings: problem_type) by the library's fresh initialisation, then only the body's weights (those
    under the model's base prefix, or a bare body's own) loaded from `model_dir`'s safetensors."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code,
                                        id2label=id2label, label2id=dict(label2id), **extra)
    clear_run_settings(config)
    model = auto_class.from_config(config, trust_remote_code=trust_remote_code)
    prefix = f"{model.base_model_prefix}."
    saved = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        saved.update(load_file(str(path)))
    state = {k: v for k, v in saved.items() if k.startswith(prefix)}
    if not state:  # a bare body's checkpoint (BertModel: keys without the prefix), as from_pretrained reads it
        body = set(getattr(model, model.base_model_prefix).state_dict())
        state = {prefix + k: v for k, v in saved.items() if k in body}
    if not state:
        raise ModelError(f"{model_dir}: no weights under '{prefix}' to carry over into a "
                         f"{type(model).__name__}")
    missing, unexpected = model.load_state_dict(state, strict=False)  # shapes must fit: a RuntimeError if not
    if unexpected:  # e.g. a sequence classifier's pooler, which a token classifier has not
        log.info("weights of %s not used by a %s: %s", model_dir, type(model).__name__, ", ".join(unexpected[:5]))
    return model, {"missing_keys": set(missing), "mismatched_keys": []}
