"""The task head (a classifier's `classifier` / `score`): trainable, saved, and back after a reload.

- `check_head_trainable`: every head module has trainable parameters, and under LoRA/DoRA the adapter saves it
  (PEFT's `modules_to_save`); otherwise the head stays random, or trains and is lost on save.
- `check_head_round_trip`: the untrained model saved exactly as a run saves its best, then loaded back twice,
  as the run's end loads it (the method's `load_best`, into a copy whose head was scrambled first) and as
  `tunesmith predict` loads RUN/model: both must give the logits of the model in memory on a fixed batch.
Decoders (causal_lm, sft, dpo) have no task head: their output layer is the vocabulary, saved with the body.
"""

from __future__ import annotations

import copy
import tempfile

import torch

from tunesmith.artifacts import RunDir
from tunesmith.errors import PreflightError, RunError
from tunesmith.data.findings import Finding
from tunesmith.methods.base import head_names, load_best_weights, plain_model
from tunesmith.methods.frozen_precision import logit_tolerance

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
LOGIT_TOLERANCE = 1e-4  # float rounding of a merge (W + scale * B @ A) stays far below this


def head_parameter_groups(context) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """{head module name: its (name, parameter) pairs}, found in the (possibly PEFT-wrapped) model; none for a
    decoder task, whose output layer (often tied to the input embedding) is part of the pretrained model."""
    model = context.model
    if context.task.inference == "generate":
        return {}
    heads = head_names(plain_model(model))
    return {head: [(n, p) for n, p in model.named_parameters() if head in n.split(".")] for head in heads}


def check_head_trainable(context) -> list[Finding]:
    found = []
    groups = head_parameter_groups(context)
    frozen = [head for head, params in groups.items() if not any(p.requires_grad for _, p in params)]
    if frozen:
        found.append(Finding("head_frozen", "error", f"the task head ({', '.join(frozen)}) has no trainable "
                             f"parameter under method {context.recipe.method.name}: it would stay at its random "
                             f"initialisation", count=len(frozen)))
    config = getattr(context.model, "peft_config", None)
    if config:
        saved = set(getattr(next(iter(config.values())), "modules_to_save", None) or [])
        unsaved = [head for head in groups if head not in saved]
        if unsaved:
            found.append(Finding("head_not_saved", "error", f"the adapter does not save the task head "
                                 f"({', '.join(unsaved)}): PEFT's modules_to_save leaves it out, so a reload gets "
                                 f"a new random head", count=len(unsaved)))
    return found


@torch.no_grad()
def logits_of(model, batch: dict) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
        return model(**inputs).logits.float().cpu()
    finally:
        model.train(was_training)


def scramble_head(model, groups: dict) -> None:
    """New values in every head parameter of `model` (a copy): a reload that skips the head keeps them."""
    generator = torch.Generator().manual_seed(1234)
    names = {n for params in groups.values() for n, _ in params}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in names:
                param.copy_(torch.randn(param.shape, generator=generator).to(param) * 0.5)


def gap_between(got: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest absolute difference (infinite when the shapes differ)."""
    return float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")


def check_head_round_trip(context) -> list[Finding]:
    if not context.recipe.preflight.round_trip:
        return []
    groups = head_parameter_groups(context)
    if not groups:
        return []
    batch = context.fixed_batch("validation", rows=4)
    expected = logits_of(context.model, batch)
    with tempfile.TemporaryDirectory(prefix="tunesmith-preflight-") as tmp:
        run = RunDir(tmp)
        try:
            context.method.save(context.model, context.tokenizer, run)
        except RunError as failed:
            raise PreflightError(f"preflight: the save/reload check could not save the untrained model: {failed}; "
                                 f"nothing was trained. Free space in {tempfile.gettempdir()} (or point TMPDIR "
                                 f"elsewhere), or set preflight.round_trip: false") from failed
        copied = copy.deepcopy(context.model)
        scramble_head(copied, groups)
        reloaded = context.method.load_best(copied, run, load_best_weights, context.tokenizer)
        paths = {"the run's reload of its best model": logits_of(reloaded.to(context.device), batch)}
        del copied, reloaded
        served, _ = context.task.load_trained(run.model_dir)
        paths["RUN/model as tunesmith predict loads it"] = logits_of(served.to(context.device), batch)
        del served
    # a frozen base held in bf16 (methods/frozen_precision.py) is compared with its fp32 reload: bf16 rounding apart
    tolerance = logit_tolerance(context.model, LOGIT_TOLERANCE, expected)
    differ = {where: gap_between(got, expected) for where, got in paths.items()}
    differ = {where: gap for where, gap in differ.items() if gap > tolerance}
    if not differ:
        return []
    where, gap = next(iter(differ.items()))
    return [Finding("head_round_trip", "error", f"saving the untrained model and loading it back changes its "
                    f"logits ({where}: up to {gap:.3g} apart): the saved model is not the trained one",
                    count=len(differ), examples=[f"{w}: {g:.3g}" for w, g in differ.items()])]
