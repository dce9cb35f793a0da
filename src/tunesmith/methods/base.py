"""What every method shares: the Method interface, and how to find a model's embeddings, layers and head.

A method is applied after the task has loaded the model and before the optimizer is built
(`tunesmith.methods.apply_method`). It sets `requires_grad` (or wraps the model, for PEFT), and may
replace how the best model is saved during training and reloaded at the end.
"""

from __future__ import annotations

from typing import Callable

from tunesmith.errors import RecipeError


class Method:
    """Full fine-tuning behaviour; other methods override `apply`, and PEFT ones `save` / `load_best`."""

    name = "full"
    reloads_exactly = True  # load_best gives back the trained weights bit for bit (a PEFT merge rounds them)

    def apply(self, model, spec):
        """Return the model to train (the same object, or a wrapper) with `requires_grad` set."""
        for param in model.parameters():
            param.requires_grad_(True)
        return model

    def continue_adapter(self, model, spec, saved, keep_head: bool):
        """init.adapter: continue (lora / dora only; the recipe's validation refuses it for other methods)."""
        raise RecipeError(f"init.adapter: continue: method {self.name} trains no adapter; use method lora or dora")

    def save(self, model, tokenizer, run, state_dict=None) -> None:
        """Save the best model so far into the run directory (RUN/model); `state_dict`: its full weights when the
        model itself holds shards (FSDP)."""
        run.save_model(model, tokenizer, state_dict=state_dict)

    def load_best(self, model, run, default: Callable, tokenizer):
        """Load the best saved weights back into `model` (`default(model, run)` reads RUN/model/*.safetensors)
        and return the model to evaluate: the one RUN/model holds."""
        default(model, run)
        return model


def freeze_all(model) -> None:
    for param in model.parameters():
        param.requires_grad_(False)


def plain_model(model):
    """The transformers model under DDP / Accelerate and PEFT wrappers (or the model itself)."""
    while hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    getter = getattr(model, "get_base_model", None)  # peft.PeftModel
    return getter() if callable(getter) else model


def base_model(model):
    """The pretrained body (model.bert, model.transformer, model.model, ...) or the model itself."""
    return getattr(model, getattr(model, "base_model_prefix", ""), model)


def is_causal_lm(model) -> bool:
    return type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))  # GPT2LMHeadModel


def head_names(model) -> list[str]:
    """Top-level modules with parameters outside the pretrained body: the task head ('classifier', 'score',
    'pre_classifier'). Empty for a bare body and for a causal LM."""
    body = base_model(model)
    if body is model or is_causal_lm(model):  # a causal LM's head is its vocabulary projection, not a task head
        return []
    return [name for name, child in model.named_children()
            if child is not body and any(True for _ in child.parameters())]


def head_parameters(model):
    for name in head_names(model):
        yield from getattr(model, name).parameters()


def embedding_parameters(model):
    """Token, position and segment embeddings (and their norm, for BERT-like `embeddings` blocks)."""
    body = base_model(model)
    seen = set()
    modules = [model.get_input_embeddings()] if hasattr(model, "get_input_embeddings") else []
    modules += [child for name, child in body.named_children() if "emb" in name or name in ("wte", "wpe")]
    for module in modules:
        for param in module.parameters():
            if id(param) not in seen:
                seen.add(id(param))
                yield param


def transformer_layers(model):
    """The list of transformer blocks, bottom first: the longest nn.ModuleList in the body
    (bert.encoder.layer, transformer.h, model.layers, ...)."""
    import torch

    lists = [m for m in base_model(model).modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise RecipeError(f"method freeze: cannot find the transformer layers of {type(model).__name__}")
    return max(lists, key=len)


def enable_gradient_checkpointing(model) -> None:
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise RecipeError(f"method.gradient_checkpointing: {type(model).__name__} does not support it")
    # non-reentrant checkpointing also works when the inputs of a checkpointed block need no gradient
    # (frozen embeddings, LoRA), so no enable_input_require_grads hook is needed
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # a KV cache is useless in training and conflicts with checkpointing


def load_best_weights(model, run, load_state=None) -> None:
    """The weights a run saved in RUN/model (*.safetensors) loaded into `model`; only tied copies may be missing.
    `load_state(state) -> (missing, unexpected)` loads them (default: `model.load_state_dict(strict=False)`; a
    sharded model's own under FSDP)."""
    from safetensors.torch import load_file

    weights = sorted(run.model_dir.glob("*.safetensors"))
    state = {}
    for path in weights:
        state.update(load_file(str(path)))
    missing, unexpected = load_state(state) if load_state else model.load_state_dict(state, strict=False)
    # tied weights (e.g. decoder embeddings) are saved once; anything else missing is a bug
    missing = [k for k in missing if k not in tied_names(model)]
    if missing or unexpected:
        raise RuntimeError(f"best checkpoint does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")


def tied_names(model) -> set[str]:
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if not isinstance(tied, dict) else list(tied.keys()) + list(tied.values()))
