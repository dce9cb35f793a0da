"""Fine-tuning methods (the recipe's `method:` section): a new method is one module plus one line here.

`apply_method(model, spec)` is called once, after the task has loaded the model and before the optimizer
is built; the optimizer then sees only the parameters the method left trainable. With `method.compile: regional`
the repeated transformer blocks of the model it returns are compiled in place (methods/regional_compile.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.errors import RecipeError
from tunesmith.methods import bitfit, freeze, full, lora
from tunesmith.methods.base import Method, enable_gradient_checkpointing
from tunesmith.methods.regional_compile import compile_repeated_blocks
from tunesmith.config.method import METHOD_NAMES, MethodSpec

METHODS: dict[str, Method] = {
    "full": full.METHOD,
    "freeze": freeze.METHOD,
    "bitfit": bitfit.METHOD,
    "lora": lora.LORA,
    "dora": lora.DORA,
}
assert tuple(METHODS) == METHOD_NAMES, "config/method.py METHOD_NAMES must list the registry's names"


@dataclass
class AppliedMethod:
    """A method applied to a model: its hooks, and the trainable / total parameter counts."""

    spec: MethodSpec
    method: Method
    trainable: int
    total: int
    adapter_start: dict | None = None  # init.adapter: continue: the adapter it continues, and its base
    compiled: str | None = None  # method.compile: regional: '30 x LlamaDecoderLayer (model.layers)'

    def save(self, model, tokenizer, run, state_dict=None) -> None:
        self.method.save(model, tokenizer, run, state_dict=state_dict)

    def load_best(self, model, run, default, tokenizer):
        """The best model, loaded, for the final evaluation (a PEFT method returns it merged)."""
        return self.method.load_best(model, run, default, tokenizer)

    @property
    def reloads_exactly(self) -> bool:
        """The best model, loaded, holds exactly the weights evaluated at the best step."""
        return self.method.reloads_exactly

    def summary(self) -> dict:
        return {"name": self.spec.name, "description": self.spec.describe(), "trainable_params": self.trainable,
                "total_params": self.total, "trainable_fraction": round(self.trainable / max(self.total, 1), 6),
                "gradient_checkpointing": self.spec.gradient_checkpointing, "compile": self.spec.compile,
                **({"compiled_blocks": self.compiled} if self.compiled else {}),
                **({"adapter_start": self.adapter_start} if self.adapter_start else {})}

    def describe(self) -> str:
        start = f", continuing the adapter of {self.adapter_start['run']}" if self.adapter_start else ""
        compiled = f"; compiling {self.compiled} at the first training step" if self.compiled else ""
        return (f"method {self.spec.describe()}{start}: {_millions(self.trainable)} of {_millions(self.total)} "
                f"parameters trainable ({100 * self.trainable / max(self.total, 1):.2f}%){compiled}")


def apply_method(model, spec: MethodSpec | None = None, *, adapter=None, keep_head: bool = True):
    """(model to train, AppliedMethod). The returned model may be a PEFT wrapper around `model`. `adapter`
    (a SavedAdapter, init.adapter: continue): that adapter is loaded and trained further instead of a new one,
    with its saved head when `keep_head`."""
    spec = spec or MethodSpec()
    if spec.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    method = METHODS[spec.name]
    model = method.apply(model, spec) if adapter is None else method.continue_adapter(model, spec, adapter, keep_head)
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise RecipeError(f"method {spec.describe()}: leaves no trainable parameter in {type(model).__name__} "
                          f"(no biases and no task head?); choose another method")
    compiled = compile_repeated_blocks(model) if spec.compile == "regional" else None
    if adapter is None:
        return model, AppliedMethod(spec, method, trainable, total, compiled=compiled)
    start = {"run": str(adapter.run.resolve()), "base": str(adapter.base_dir), "head": "kept" if keep_head else "new"}
    targets = adapter.config.get("target_modules")
    effective = spec.model_copy(update={"r": adapter.rank, "alpha": float(adapter.config.get("lora_alpha")),
                                        "target_modules": sorted(targets) if isinstance(targets, list) else None})
    return model, AppliedMethod(effective, method, trainable, total, start, compiled)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total), each shared tensor counted once."""
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 10_000 else f"{n:,}"
