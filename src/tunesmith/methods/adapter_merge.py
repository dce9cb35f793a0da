"""Several saved LoRA adapters merged into one with PEFT's `add_weighted_adapter` (`tunesmith merge`).

    check_merge(adapters, "ties", weights, density=0.5)        # clear errors before anything is loaded
    body = merge_bodies(adapters, weights, "ties", density=0.5)  # MergedBody: the merged matrices + their config
    write_task_adapter(out / "tasks" / "sst2" / "adapter", body, adapters[0])   # merged body + that run's head

Task heads are task-specific (their label sets differ) and cannot be merged: PEFT refuses to combine adapters
that each save the same module (`modules_to_save`). So only the adapters' low-rank matrices (the body) are
merged: each source adapter is loaded without its head, under its own name, and PEFT combines them into one
adapter ("merged"); each source task then gets a PEFT adapter directory of its own that holds the merged body
matrices and that task's trained head. One merged body, N heads: switched per task, only the head changes.

The combinations are PEFT's: svd (the default, PEFT's too), linear, cat, ties, ties_svd, dare_ties,
dare_linear, dare_ties_svd, dare_linear_svd, magnitude_prune, magnitude_prune_svd; `density` (the share of
each task's delta kept) goes with ties, dare and magnitude_prune. DoRA adapters are refused: PEFT combines the
A and B matrices only, not DoRA's magnitude vectors.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import RunError
from tunesmith.methods.adapters import SavedAdapter, write_base_record
from tunesmith.models import load_for_classification, trained_head

COMBINATIONS = ("svd", "linear", "cat", "ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd",
                "dare_linear_svd", "magnitude_prune", "magnitude_prune_svd")
SAME_RANK = ("linear", "ties", "dare_ties", "dare_linear", "magnitude_prune")  # PEFT needs equal r for these
WITH_DENSITY = tuple(c for c in COMBINATIONS if c.startswith(("ties", "dare", "magnitude")))
MERGED = "merged"


@dataclass
class MergedBody:
    """The merged adapter's matrices (keys as PEFT saves them) and its LoRA config (no head, no task type)."""

    state: dict
    config: object  # peft.LoraConfig

    @property
    def rank(self) -> int:
        return int(self.config.r)


def check_merge(adapters: list[SavedAdapter], combination: str, weights: list[float],
                density: float | None) -> None:
    """Everything PEFT would refuse, or do silently wrong, said first in one line."""
    if combination not in COMBINATIONS:
        raise RunError(f"--combination {combination}: not one of PEFT's combinations ({', '.join(COMBINATIONS)})")
    if len(weights) != len(adapters):
        raise RunError(f"--weights: {len(weights)} weights for {len(adapters)} runs; give one per run, in order")
    if not all(math.isfinite(w) for w in weights) or not any(weights):
        raise RunError(f"--weights {','.join(f'{w:g}' for w in weights)}: give finite numbers, not all zero")
    if combination in WITH_DENSITY and (density is None or not 0 < density <= 1):
        raise RunError(f"--combination {combination} needs --density, the share of each adapter's delta kept, "
                       f"in (0, 1] (e.g. 0.5)")
    if combination not in WITH_DENSITY and density is not None:
        raise RunError(f"--density goes with the combinations {', '.join(WITH_DENSITY)}, not {combination}: "
                       f"remove it")
    dora = [str(a.run) for a in adapters if a.method == "dora"]
    if dora:
        raise RunError(f"{dora[0]} is a DoRA run: merging DoRA adapters is not supported (PEFT's "
                       f"add_weighted_adapter combines the A and B matrices, not DoRA's magnitude vectors)")
    ranks = {str(a.run): a.rank for a in adapters}
    if combination in SAME_RANK and len(set(ranks.values())) > 1:
        shown = ", ".join(f"{run} r={r}" for run, r in ranks.items())
        raise RunError(f"--combination {combination} needs adapters of one rank ({shown}); use svd or cat, "
                       f"which merge adapters of different ranks")


def body_config(adapter: SavedAdapter):
    """The adapter's LoRA config without its head and task type: only its low-rank matrices."""
    from peft import LoraConfig

    config = LoraConfig.from_pretrained(str(adapter.path))
    config.modules_to_save, config.task_type, config.inference_mode = None, None, True
    return config


def merge_bodies(adapters: list[SavedAdapter], weights: list[float], combination: str, density: float | None,
                 *, trust_remote_code: bool = False) -> MergedBody:
    """The adapters' matrices on their base (built once), combined by PEFT into one adapter."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from tunesmith.methods.lora import quiet_peft

    first = adapters[0]
    base, _ = load_for_classification(first.require_base(), **trained_head(first.run / "model"),
                                      trust_remote_code=trust_remote_code)
    names = [f"source{index}" for index in range(len(adapters))]
    model = None
    with quiet_peft():
        for adapter, name in zip(adapters, names):
            if model is None:
                model = get_peft_model(base, body_config(adapter), adapter_name=name)
            else:
                model.add_adapter(name, body_config(adapter))
            body, _ = adapter.split_state()
            result = set_peft_model_state_dict(model, body, adapter_name=name)
            missing = [k for k in result.missing_keys if ".lora_" in k and f".{name}" in k]
            if result.unexpected_keys or missing:
                raise RunError(f"{adapter.run}: its adapter does not fit the base model of the other runs "
                               f"(unexpected {result.unexpected_keys[:2]}, missing {missing[:2]})")
        model.add_weighted_adapter(names, list(weights), MERGED, combination_type=combination, density=density)
    return MergedBody(get_peft_model_state_dict(model, adapter_name=MERGED), model.peft_config[MERGED])


def write_task_adapter(out_dir: Path, body: MergedBody, source: SavedAdapter) -> None:
    """A PEFT adapter directory: the merged body's matrices and config, with `source`'s head and task type."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(body.config)
    config.task_type = source.config.get("task_type")
    config.modules_to_save = source.head_names or None
    config.base_model_name_or_path = str(source.base_dir)
    config.inference_mode = True
    config.save_pretrained(str(out_dir))
    _, head = source.split_state()
    state = {key: tensor.contiguous() for key, tensor in {**body.state, **head}.items()}
    save_file(state, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    write_base_record(out_dir, source.base_dir)
