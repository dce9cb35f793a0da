"""The recipe: one YAML file (plus --set overrides) that says everything about a run.

Validated with pydantic before any data or model is touched; every problem becomes a one-line
RecipeError naming the key (with a close match for typos). The resolved recipe is saved in the run
directory, so a run can always be repeated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from tunesmith.config.baselines import NAMES as BASELINE_NAMES
from tunesmith.config.baselines import BaselinesSpec, QualityGateSpec
from tunesmith.config.checkpoint import CheckpointSpec, Resume
from tunesmith.config.imbalance import ImbalanceSpec, InspectSpec
from tunesmith.config.lm import LMSpec
from tunesmith.config.messages import alias_problem, describe_errors
from tunesmith.config.method import MethodSpec, default_lr
from tunesmith.config.multi_label import MultiLabelSpec
from tunesmith.config.multi_task import MULTI_TASK, NOT_SUPPORTED, MultiTaskSpec, check_tasks
from tunesmith.config.preference import PreferenceSpec
from tunesmith.config.preflight import PreflightSpec
from tunesmith.config.regression import RegressionSpec
from tunesmith.config.report import ReportSpec
from tunesmith.config.token_classification import TokenClassificationSpec
from tunesmith.config.transfer import InitSpec, TransferSpec
from tunesmith.config.tune import TuneSpec
from tunesmith.errors import RecipeError, shown


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, values are checked on assignment, and
    numbers are finite (inf and nan are refused everywhere, as in every other section's model_config)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class HeldOut(Section):
    """How to get a validation set: a fraction of the training file, or a file of its own."""

    split: float | None = Field(0.2, gt=0, lt=1, description="fraction of the training rows held out")
    stratify: bool = True
    path: str | None = None
    max_rows: int | None = Field(None, ge=1, description="evaluate on a random sample of at most this many "
                                                         "validation rows, seeded with train.seed (default: all)")

    @model_validator(mode="after")
    def _one_source(self) -> "HeldOut":
        if self.path is not None:
            self.__dict__["split"] = None
        elif self.split is None:
            raise ValueError("give either split (a fraction) or path (a file)")
        return self


class DataSpec(Section):
    train: str
    format: Literal["csv", "tsv", "jsonl", "json", "parquet", "txt", "conll"] | None = None
    header: bool | None = None
    columns: dict[str, Union[str, int, list[Union[str, int]]]] = Field(
        default_factory=lambda: {"text": "text", "label": "label"},
        description="role -> column name or 0-based index; regression: label may list several target columns")
    label_separator: str = Field(",", min_length=1, description="multi_label, csv/tsv: the labels of a cell are "
                                                                "split on this string")
    tag_scheme: Literal["iob1", "iob2", "bioes"] = Field(
        "iob2", description="token_classification: the tag scheme of the file, converted to IOB2 on read")
    quoting: Literal["auto", "minimal", "none"] = "auto"
    delimiter: str | None = None
    encoding: str = "utf-8"
    extra_fields: Literal["error", "ignore"] = Field(
        "error", description="csv/tsv rows with more fields than the header (or first row): an error, or "
                             "ignore the extra trailing fields (ragged files addressed by column index)")
    validation: HeldOut = Field(default_factory=HeldOut)
    test: str | None = None
    drop_duplicates: bool = False
    cache_tokenized: bool = Field(
        True, description="keep the tokenized splits on disk and reuse them while the data, tokenizer and "
                          "encoding settings are unchanged (tunesmith/data/token_cache.py)")

    @field_validator("validation", mode="before")
    @classmethod
    def _path_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"path": value}
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"split": value}
        if not isinstance(value, (dict, HeldOut)):
            raise ValueError("must be a fraction of the training rows (e.g. 0.2), the path of a validation "
                             "file, or a mapping with split, path, stratify")
        return value

    @field_validator("columns")
    @classmethod
    def _known_roles(cls, value: dict) -> dict:
        roles = ("text", "text_pair", "label", "instruction", "input", "output", "system", "messages", "tokens",
                 "tags", "prompt", "chosen", "rejected")
        unknown = set(value) - set(roles)
        if unknown:
            raise ValueError(f"unknown column role {shown(sorted(unknown)[0])}; roles are {', '.join(roles)}")
        listed = [role for role, column in value.items() if isinstance(column, list) and role != "label"]
        if listed:
            raise ValueError(f"'{listed[0]}' names one column; only label may list several (regression targets)")
        if isinstance(value.get("label"), list) and not value["label"]:
            raise ValueError("label: an empty list of target columns")
        if not {"text", "messages", "tokens"} & set(value) and not {"instruction", "output"} <= set(value) \
                and not {"chosen", "rejected"} <= set(value):
            raise ValueError("needs a 'text' column (sft: 'instruction' and 'output', or 'messages'; "
                             "token_classification: 'tokens'; dpo: 'chosen' and 'rejected')")
        return _one_column_per_role(value)


class EarlyStopping(Section):
    metric: str | None = Field(None, description="default: the task's own (classification macro_f1, language models loss)")
    patience: int | None = Field(None, ge=1, description="evaluations without improvement before stopping")
    target: float | None = None
    min_delta: float = Field(0.0, ge=0)


class TrainSpec(Section):
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0, description="default: the method's own (config/method.py DEFAULT_LR: "
                                                     "full 5e-5, lora/dora 1e-3, bitfit 5e-3, head only 1e-2)")
    weight_decay: float = Field(0.01, ge=0)
    optimizer: Literal["adamw", "adam", "sgd", "rmsprop"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1, description="for sgd and rmsprop")
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup: float = Field(0.06, ge=0, description="a fraction of the steps (< 1) or a number of steps (>= 1)")
    max_length: int = Field(128, ge=2)
    group_by_length: bool = Field(True, description="batch rows of similar length together (less padding), the "
                                  "batches in random order")
    grad_accumulation: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 where the GPU or CPU runs it natively (AVX512-BF16/AMX), else fp32")
    eval_precision: Literal["train", "fp32"] = Field(
        "train", description="train: the run's evaluations (before, during and after training) in the training "
                             "precision, bf16 autocast when training in bf16, as Trainer does; fp32: in fp32, as "
                             "`tunesmith evaluate`, predict and export always run (train/precision.py)")
    eval_every: Union[Literal["epoch"], Annotated[int, Field(ge=1)]] = "epoch"
    log_every: int = Field(10, ge=1)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    seed: int = Field(0, ge=0, le=2**32 - 1, description="numpy's range of seeds: 0 to 2**32 - 1")
    on_nan: Literal["stop", "skip"] = Field("stop", description="a NaN/inf loss: stop the run, or skip the batch")
    max_nan_skips: int = Field(10, ge=0, description="with on_nan: skip, stop after skipping more batches than this")


class Recipe(Section):
    model: str
    task: str = Field("classification", description="a name in tunesmith.tasks.TASKS; checked by make_task")
    data: DataSpec | None = None  # required, except by task: multi_task (each task's data under tasks.<name>)
    train: TrainSpec = Field(default_factory=TrainSpec)
    output: str = "runs/latest"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    lm: LMSpec = Field(default_factory=LMSpec)  # causal_lm / sft settings (config/lm.py)
    regression: RegressionSpec = Field(default_factory=RegressionSpec)  # task: regression (loss, scaling)
    multi_label: MultiLabelSpec = Field(default_factory=MultiLabelSpec)  # task: multi_label (loss, thresholds)
    token_classification: TokenClassificationSpec = Field(  # task: token_classification (alignment, windows)
        default_factory=TokenClassificationSpec)
    preference: PreferenceSpec = Field(default_factory=PreferenceSpec)  # task: dpo (loss, reference, bad pairs)
    imbalance: ImbalanceSpec = Field(default_factory=ImbalanceSpec)  # classification (config/imbalance.py)
    inspect: InspectSpec = Field(default_factory=InspectSpec)  # data diagnostics before training (tunesmith/inspection.py)
    preflight: PreflightSpec = Field(default_factory=PreflightSpec)  # checks before the first step (tunesmith/preflight/)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)  # config/checkpoint.py
    resume: Resume = False  # true: continue from the newest valid checkpoint in output; auto: if there is one
    overwrite: bool = False  # replace a finished run in output, once the new run has finished (train/run_claim.py)
    method: MethodSpec = Field(default_factory=MethodSpec)  # full | freeze | bitfit | lora | dora (tunesmith/methods/)
    baselines: BaselinesSpec = Field(default_factory=BaselinesSpec)  # majority | tfidf | scratch (tunesmith/baselines/)
    report: ReportSpec = Field(default_factory=ReportSpec)  # report.html, trackers (tunesmith/report/)
    quality_gate: QualityGateSpec | None = None  # fail (exit 3) when the model does not beat a baseline
    tune: TuneSpec | None = None  # `tunesmith tune`'s search space (config/tune.py); `tunesmith train` ignores it
    init: InitSpec | None = None  # model: names a finished run: what it carries over (config/transfer.py)
    transfer: TransferSpec | None = None  # transfer.watch: evaluate an earlier run's task too (config/transfer.py)
    tasks: dict[str, Any] | None = None  # task: multi_task: name -> that task's part (config/multi_task.py)
    multi_task: MultiTaskSpec | None = None  # task: multi_task: how batches' tasks are drawn
    _lr_from_method: bool = PrivateAttr(False)  # train.lr was left out: the method's default (see lr_source)

    @model_validator(mode="after")
    def _multi_task_shape(self) -> "Recipe":
        if self.task != MULTI_TASK:
            if self.data is None:
                raise ValueError("missing key 'data'")
            for key in ("tasks", "multi_task"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only with task: multi_task (task is {self.task})")
            return self
        check_tasks(self.tasks, self.model_fields_set)
        if self.multi_task is None:
            self.__dict__["multi_task"] = MultiTaskSpec()
        return self

    @model_validator(mode="after")
    def _gate_has_its_baseline(self) -> "Recipe":
        beat = self.quality_gate.beat if self.quality_gate else None
        if beat in BASELINE_NAMES and not getattr(self.baselines, beat):
            raise ValueError(f"quality_gate.beat: '{beat}' is not measured; turn it on under baselines: "
                             f"(baselines: {{{beat}: true}}) or beat another reference")
        return self

    @model_validator(mode="after")
    def _adapter_start_fits(self) -> "Recipe":
        if self.init is None or self.init.adapter != "continue":
            return self
        if self.method.name not in ("lora", "dora"):
            raise ValueError(f"init.adapter: continue trains a LoRA/DoRA run's adapter further: it needs method lora "
                             f"or dora (method is {self.method.name}); remove init.adapter")
        if self.task == "dpo" and self.preference.uses_reference:
            raise ValueError("init.adapter: continue is not supported for dpo with a reference model: the reference "
                             "is the policy with its adapter switched off, which would be the parent's base, not the "
                             "parent; use init.adapter: new (the parent merged is then the reference) or a "
                             "reference-free loss (simpo)")
        return self

    @model_validator(mode="after")
    def _method_learning_rate(self) -> "Recipe":
        if self.train.lr is None:  # filled in once, at validation: the recipe is never changed afterwards
            self.train.__dict__["lr"] = default_lr(self.method)
            self._lr_from_method = True
        return self

    @property
    def lr_source(self) -> str:
        """Where train.lr comes from: the recipe, or the method's default."""
        return f"the default for method {self.method.name}" if self._lr_from_method else "the recipe"

    def to_mapping(self) -> dict:
        """The recipe as a mapping that validates back to it, except that a method-default train.lr is left out
        (so that a changed method, in a tune trial, brings its own)."""
        raw = self.model_dump(mode="json")
        if self._lr_from_method:
            del raw["train"]["lr"]
        return raw

    def to_yaml(self) -> str:
        unused = {k: True for k in ("tune", "init", "transfer", "data", "tasks", "multi_task")
                  if getattr(self, k) is None}  # no empty keys
        if self.task == MULTI_TASK:  # the sections a multi-task recipe refuses (config/multi_task.py) are left out
            unused.update({k: True for k in NOT_SUPPORTED}, train={"group_by_length"})
        return yaml.safe_dump(self.model_dump(mode="json", exclude=unused or None), sort_keys=False)


def load_recipe(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> Recipe:
    """Read a YAML recipe, apply `key.sub=value` overrides, validate. Raises RecipeError."""
    raw: dict = dict(base or {})
    if path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
    return validate_recipe(raw, source=str(path) if path else "recipe")


def validate_recipe(raw: dict, source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(f"{source}: {describe_errors(exc.errors(), Recipe)}") from None


class _RecipeLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error, not a silent override."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"the key '{key}' appears twice",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)

    def compose_document(self):
        """The document's node graph; aliases that expand too far (a "billion laughs" document) or into
        themselves are refused before anything is built from them (config/messages.py: alias_problem)."""
        node = super().compose_document()
        problem = alias_problem(node) if node is not None else None
        if problem:
            raise yaml.composer.ComposerError(None, None, problem, None)
        return node


def _read_yaml(path: Path) -> dict:
    if path.is_dir():
        raise RecipeError(f"{path}: is a directory, not a recipe file")
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file does not exist")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}{where}: not valid YAML ({' '.join(str(getattr(exc, 'problem', exc)).split())})") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:  # e.g. an impossible date (2021-02-30), nesting too deep
        raise RecipeError(f"{path}: not a valid recipe ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping (model:, data:, train: ...)")
    return raw


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise RecipeError(f"--set {shown(item)}: expected KEY=VALUE, e.g. --set train.lr=3e-5")
    key, text = item.split("=", 1)
    try:
        value = yaml.load(text, Loader=_RecipeLoader) if text else None  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, ValueError, RecursionError):  # not YAML: the text itself
        value = text
    return key.strip(), value


def with_values(raw: dict, values: dict[str, Any]) -> dict:
    """A deep copy of a raw recipe mapping with each dotted key (`train.lr`) set to its value."""
    import copy

    raw = copy.deepcopy(raw)
    for key, value in values.items():
        _set_dotted(raw, key, value)
    return raw


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None or isinstance(child, str) and part == "validation":
            child = {} if child is None else {"path": child}
            node[part] = child
        if not isinstance(child, dict):
            raise RecipeError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def _one_column_per_role(columns: dict) -> dict:
    """data.columns maps each role to a column of its own."""
    seen: dict = {}
    for role, listed in columns.items():
        for column in listed if isinstance(listed, list) else [listed]:  # label may list several targets
            if column in seen:
                raise ValueError(f"roles '{seen[column]}' and '{role}' both map to column {shown(column)}; "
                                 f"each role needs a column of its own")
            seen[column] = role
    return columns
