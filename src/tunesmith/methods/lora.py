"""lora and dora: low-rank adapters through PEFT (Hu et al., 2021; DoRA: Liu et al., 2024).

The base model is frozen; each target module gets trainable low-rank matrices (rank `r`, scale
`alpha / r`); DoRA also learns a magnitude per output feature. The task head (a sequence or token
classifier's `classifier` / `score`) is new, so it is trained in full and saved with the adapter (`modules_to_save`).

What a run directory holds (the choice, and why):

    RUN/model/     the adapter MERGED into the base: a plain Hugging Face model. `from_pretrained`,
                   `tunesmith predict/evaluate` and `tunesmith export` use it unchanged, with no PEFT
                   and no base model at hand.
    RUN/adapter/   the PEFT adapter (adapter_config.json + adapter_model.safetensors, head included):
                   a few hundred KB to load on top of the base model (`load_adapter_model`), e.g. to keep
                   one base and many adapters (`tunesmith predict A B`, methods/adapter_bank.py), with
                   tunesmith_base.json: the base's directory and weights sha256 (methods/adapters.py).

Both are written each time the validation metric improves. The best weights are reloaded from
RUN/adapter at the end of training, so the final metrics are those of the adapter model exactly;
RUN/model gives the same logits up to float rounding of the merge (W + scale * B @ A).

`init.adapter: continue` (`continue_start`, `LoRA.continue_adapter`) starts a run from a finished run's
RUN/adapter, on the base it sits on, instead of from a fresh adapter.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from pathlib import Path

from tunesmith.errors import ModelError, RecipeError, RunError
from tunesmith.models import load_for_classification, trained_head
from tunesmith.models.parent_run import find_parent_run
from tunesmith.methods.adapters import SavedAdapter, is_adapter_run, read_saved_adapter, write_base_record
from tunesmith.methods.base import Method, head_names, is_causal_lm
from tunesmith.methods.frozen_precision import has_bf16_frozen, restore_frozen_fp32

# target modules when the recipe names none: the attention projections of each architecture
DEFAULT_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
}


def target_modules(model, spec) -> list[str]:
    if spec.target_modules:
        return list(spec.target_modules)
    model_type = getattr(model.config, "model_type", None)
    if model_type in DEFAULT_TARGETS:
        return DEFAULT_TARGETS[model_type]
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    if model_type in PEFT_DEFAULTS:
        return list(PEFT_DEFAULTS[model_type])
    raise RecipeError(f"method.target_modules: no default for model type '{model_type}'; name the modules to adapt, "
                      f"e.g. target_modules: [q_proj, v_proj]")


class LoRA(Method):
    name = "lora"
    reloads_exactly = False  # the adapter merged into the base weights: the same model up to rounding
    use_dora = False

    def apply(self, model, spec):
        targets = target_modules(model, spec)
        names = [name for name, _ in model.named_modules()]
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            raise RecipeError(f"method.target_modules: {type(model).__name__} has no module named "
                              f"{', '.join(missing)}")
        from peft import get_peft_model

        with quiet_peft():
            return get_peft_model(model, self.config_for(model, spec, spec.r, spec.alpha, targets))

    def config_for(self, model, spec, r: int, alpha: float, targets):
        from peft import LoraConfig, TaskType

        kind = type(model).__name__
        task_type = TaskType.CAUSAL_LM if is_causal_lm(model) else (
            TaskType.SEQ_CLS if kind.endswith("ForSequenceClassification") else
            TaskType.TOKEN_CLS if kind.endswith("ForTokenClassification") else None)
        # GPT-2's Conv1D stores weights transposed: PEFT must know (it would guess, with a warning)
        conv1d = any(type(m).__name__ == "Conv1D" for n, m in model.named_modules()
                     if any(n == t or n.endswith("." + t) for t in targets))
        return LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=spec.dropout, target_modules=targets, fan_in_fan_out=conv1d,
            use_dora=self.use_dora, modules_to_save=head_names(model) or None, task_type=task_type,
        )

    def continue_adapter(self, model, spec, saved, keep_head: bool):
        """init.adapter: continue: the parent's saved adapter on `model` (its base), trainable: its matrices
        (rank, scale, targets: the parent's; dropout: the recipe's) and, with `keep_head`, its trained head."""
        from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        targets = saved.config.get("target_modules")
        config = self.config_for(model, spec, saved.rank, saved.config.get("lora_alpha"),
                                 sorted(targets) if isinstance(targets, list) else targets)
        with quiet_peft():
            peft_model = get_peft_model(model, config)
        body, head = saved.split_state()
        if not keep_head:  # the new head as it was initialised (PEFT loads every saved module it wraps)
            head = {k: v for k, v in get_peft_model_state_dict(peft_model).items() if k not in body}
        result = set_peft_model_state_dict(peft_model, {**body, **head})
        not_loaded = [k for k in result.missing_keys if ".lora_" in k or (keep_head and ".modules_to_save." in k)]
        if result.unexpected_keys or not_loaded:
            raise RunError(f"{saved.path}: the adapter does not fit {type(model).__name__} built from its base "
                           f"{saved.base_dir} (unexpected {result.unexpected_keys[:2]}, missing {not_loaded[:2]})")
        return peft_model

    def save(self, model, tokenizer, run, state_dict=None) -> None:
        """RUN/adapter only (a few MB): merging a copy at every new best cost time inside the training loop
        and a second copy of the weights in memory; RUN/model is written once, by `load_best`. A sharded model
        (`state_dict` given) is refused before training (train/sharding.py)."""
        if state_dict is not None:
            raise RuntimeError("LoRA/DoRA save the adapter of an unsharded model")
        from tunesmith.artifacts import replace_dir, save_failure

        staging = Path(tempfile.mkdtemp(prefix=".adapter-", dir=run.path))
        try:
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            write_base_record(staging, next(iter(model.peft_config.values())).base_model_name_or_path)
            replace_dir(staging, adapter_dir(run))
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            failure = save_failure(exc, adapter_dir(run))  # disk full: one line, the adapter saved before intact
            if failure is not None:
                raise failure from None
            raise

    def load_best(self, model, run, default, tokenizer):
        """Load the best adapter, merge it into the base weights in place (no copy) and write the merged
        model to RUN/model; the merged plain model is returned for the final evaluation."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = adapter_dir(run) / "adapter_model.safetensors"
        if not weights.is_file():
            raise RunError(f"{run.path}: the best adapter {weights} is missing")
        state = load_file(str(weights))
        if has_bf16_frozen(model):  # the base was held in bf16 for training: merge into its fp32 weights
            restore_frozen_fp32(model, next(iter(model.peft_config.values())).base_model_name_or_path)
        result = set_peft_model_state_dict(model, state)
        if result.unexpected_keys:
            raise RuntimeError(f"best adapter does not match the model: unexpected {result.unexpected_keys[:3]}")
        merged = model.merge_and_unload()
        run.save_model(merged, tokenizer)
        return merged


class DoRA(LoRA):
    name = "dora"
    use_dora = True


def continue_start(recipe) -> SavedAdapter | None:
    """init.adapter: continue: the parent run's adapter (checked against the recipe's method), else None."""
    if recipe.init is None or recipe.init.adapter != "continue":
        return None
    parent = find_parent_run(recipe.model)
    if parent is None:
        raise RecipeError(f"init.adapter: continue needs model: to name a finished LoRA/DoRA run; {recipe.model} "
                          f"is not a tunesmith run")
    if parent.export is not None or not is_adapter_run(parent.path):
        raise ModelError(f"init.adapter: continue: {parent.path} has no adapter to continue (RUN/adapter: only "
                         f"LoRA/DoRA runs have one; a merged export has it merged into its weights); use "
                         f"init.adapter: new, or start from a LoRA/DoRA run")
    saved = read_saved_adapter(parent.path)
    spec = recipe.method
    if saved.method != spec.name:
        raise RecipeError(f"init.adapter: continue: {parent.path} trained a {saved.method} adapter and this run's "
                          f"method is {spec.name}: use method {saved.method} to continue it")
    theirs = {"r": saved.rank, "alpha": saved.config.get("lora_alpha"),
              "target_modules": sorted(saved.config.get("target_modules") or [])}
    ours = {"r": spec.r, "alpha": spec.alpha, "target_modules": sorted(spec.target_modules or [])}
    differ = [k for k in theirs if k in spec.model_fields_set and ours[k] != theirs[k]]
    if differ:
        shown = ", ".join(f"method.{k}: {ours[k]} (the adapter's: {theirs[k]})" for k in differ)
        raise RecipeError(f"init.adapter: continue: {shown}; a continued adapter keeps its rank, scale and target "
                          f"modules: remove {', '.join('method.' + k for k in differ)}, or use init.adapter: new")
    saved.require_base()
    return saved


def adapter_dir(run) -> Path:
    return Path(run.path) / "adapter"


def load_adapter_model(run_path, *, trust_remote_code: bool = False):
    """(PeftModel, tokenizer) for a LoRA/DoRA run: the base model named in RUN/adapter/adapter_config.json,
    with the saved adapter and head on top. For inference, RUN/model (merged) needs none of this."""
    import json

    from peft import PeftModel

    path = Path(run_path) / "adapter"
    if not (path / "adapter_config.json").is_file():
        raise RunError(f"{run_path}: no adapter (RUN/adapter/adapter_config.json); was the run trained with LoRA?")
    base_dir = Path(json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"])
    base, tokenizer = load_for_classification(base_dir, **trained_head(Path(run_path) / "model"),
                                              trust_remote_code=trust_remote_code)
    with quiet_peft():
        return PeftModel.from_pretrained(base, path).eval(), tokenizer


@contextlib.contextmanager
def quiet_peft():
    """PEFT asks transformers v5 for the deprecated `is_gradient_checkpointing`: drop that one warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


LORA = LoRA()
DORA = DoRA()
