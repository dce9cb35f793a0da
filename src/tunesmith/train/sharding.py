"""Sharded engines through Accelerate: FSDP2 and DeepSpeed ZeRO 1/2, as an Accelerate config asks for them.

The engine is Accelerate's: `tunesmith train --accelerate-config FILE` (cli/launch.py) or `accelerate launch
--config_file FILE -m tunesmith train ...` sets Accelerate's environment (ACCELERATE_USE_FSDP, FSDP_*,
ACCELERATE_USE_DEEPSPEED, ...) and each process's Accelerator builds its FullyShardedDataParallelPlugin /
DeepSpeedPlugin from it. What this module adds:

- what the machine lacks, before anything is built (`check_machine`): CUDA GPUs (Accelerate runs FSDP and
  DeepSpeed on GPUs only; without one it would silently fall back to plain data parallelism), the deepspeed
  package; Megatron-LM is refused;
- the engine settings tunesmith can honour (`fsdp_problem`, `deepspeed_problem`: on the Accelerate config
  before the launch and on each process's plugin after, `plugin_problem`): FSDP version 2 with full state dicts
  and without cpu_ram_efficient_loading, DeepSpeed ZeRO stage 0-2 without an optimizer or scheduler of its own;
- what a recipe may ask under them (`check_recipe`);
- full weights and optimizer states under FSDP (`full_model_state`, `load_full_model_state`,
  `full_optimizer_state`, `load_full_optimizer_state`): torch's distributed state-dict API, the one
  Accelerate's own FSDP2 save/load calls, with `full_state_dict=True` (gathered on rank 0, CPU): RUN/model and
  the checkpoints hold the full weights in safetensors, as under DDP. Every process must call them together.

Under DeepSpeed ZeRO 1/2 every process holds the full weights (only the optimizer state is partitioned), so
models are saved, reloaded and evaluated as under DDP; checkpoints are not written (the partitioned optimizer
state is in DeepSpeed's own pickled files), so such a run cannot be resumed, and says so.

Test-only hook: with TUNESMITH_TEST_FSDP_OVER_GLOO=1 in the environment, a process without CUDA GPUs asked for
FSDP runs Accelerate's FSDP2 engine over gloo on its CPU (`fsdp_over_gloo`): Accelerate only engages FSDP on
accelerators, and the suite has none. It is how tests/train/test_sharded.py trains, saves and resumes FSDP for
real; a user on a CPU machine is refused instead.
"""

from __future__ import annotations

import importlib.util
import os

from tunesmith.errors import RecipeError, TrainingError

FSDP, DEEPSPEED, MEGATRON = "FSDP", "DeepSpeed", "Megatron-LM"
TEST_FSDP_OVER_GLOO = "TUNESMITH_TEST_FSDP_OVER_GLOO"
_ENVIRONMENT = (("ACCELERATE_USE_FSDP", FSDP), ("ACCELERATE_USE_DEEPSPEED", DEEPSPEED),
                ("ACCELERATE_USE_MEGATRON_LM", MEGATRON))
_TYPES = {"FSDP": FSDP, "DEEPSPEED": DEEPSPEED, "MEGATRON_LM": MEGATRON}
ADAPTER_METHODS = ("lora", "dora")


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def requested_engine() -> str | None:
    """The sharded engine Accelerate's launcher asked this process for (its environment), or None."""
    return next((engine for variable, engine in _ENVIRONMENT if _flag(variable)), None)


def engine_of(accelerator) -> str | None:
    """FSDP or DeepSpeed when `accelerator` runs one, else None (one process, DDP)."""
    return _TYPES.get(str(accelerator.distributed_type).split(".")[-1])


def test_hook_enabled() -> bool:
    """TUNESMITH_TEST_FSDP_OVER_GLOO=1 (module doc)."""
    return _flag(TEST_FSDP_OVER_GLOO)


def fsdp_over_gloo_requested() -> bool:
    """The test hook (module doc): FSDP asked for, no CUDA GPU, TUNESMITH_TEST_FSDP_OVER_GLOO=1."""
    import torch

    return test_hook_enabled() and requested_engine() == FSDP and not torch.cuda.is_available()


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def machine_problem(engine: str, gpus: int) -> str | None:
    """What this machine lacks for `engine` (one clause), or None."""
    if engine == MEGATRON:
        return ("Megatron-LM is not supported (tensor and pipeline parallelism need a Megatron model); use FSDP "
                "(distributed_type: FSDP, fsdp_version: 2) to shard a model over GPUs")
    lacking = [] if gpus else ["this machine has no CUDA GPU"]
    if engine == DEEPSPEED and not deepspeed_installed():
        lacking.append("deepspeed is not installed (pip install deepspeed)")
    if not lacking:
        return None
    return (f"{engine} needs CUDA GPUs{' and the deepspeed package' if engine == DEEPSPEED else ''}; "
            f"{' and '.join(lacking)}. On CPUs train with --processes N (data parallelism over gloo)")


def check_machine() -> None:
    """TrainingError, before the Accelerator is built, when this process was asked for an engine the machine
    cannot run (module doc)."""
    import torch

    engine = requested_engine()
    if engine is None or fsdp_over_gloo_requested():
        return
    problem = machine_problem(engine, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if problem:
        raise TrainingError(f"distributed training with {problem}")


# --- the engine's settings ------------------------------------------------------------------------------------


def fsdp_problem(version, state_dict_type, ram_efficient_loading, where: str) -> str | None:
    """What tunesmith cannot honour in FSDP settings `where` names (config keys or plugin fields), or None."""
    if str(version) != "2":
        return (f"{where}: fsdp_version {version} is not supported; set fsdp_version: 2 (FSDP2, torch's "
                f"fully_shard: the optimizer is built before the model is sharded, as tunesmith does)")
    kind = str(getattr(state_dict_type, "name", state_dict_type)).upper()
    if kind != "FULL_STATE_DICT":
        return (f"{where}: fsdp_state_dict_type {kind} is not supported; set fsdp_state_dict_type: "
                f"FULL_STATE_DICT (RUN/model and tunesmith's checkpoints hold full weights, in safetensors)")
    if str(ram_efficient_loading).lower() in ("1", "true", "yes"):
        return (f"{where}: fsdp_cpu_ram_efficient_loading true is not supported; set it to false (every process "
                f"loads the pretrained model before Accelerate starts, so it would save nothing, and in a check "
                f"here it left the optimizer without a parameter on one process)")
    return None


def deepspeed_problem(stage, extra_sections: list[str], where: str) -> str | None:
    """What tunesmith cannot honour in DeepSpeed settings, or None."""
    if str(stage) not in ("0", "1", "2"):
        return (f"{where}: ZeRO stage {stage} is not supported (stage 3 partitions the weights, which RUN/model "
                f"and the final evaluation read whole); use zero_stage 2, or FSDP (fsdp_version: 2) to shard "
                f"the weights too")
    if extra_sections:
        return (f"{where}: the DeepSpeed config sets {' and '.join(extra_sections)}; remove it: the recipe's "
                f"train.optimizer and train.schedule are used")
    return None


def plugin_problem(accelerator) -> str | None:
    """`fsdp_problem` / `deepspeed_problem` on the plugin this process's Accelerator built."""
    engine = engine_of(accelerator)
    if engine == FSDP:
        plugin = accelerator.state.fsdp_plugin
        return fsdp_problem(plugin.fsdp_version, plugin.state_dict_type, plugin.cpu_ram_efficient_loading, "FSDP")
    if engine == DEEPSPEED:
        config = accelerator.state.deepspeed_plugin.deepspeed_config
        stage = config.get("zero_optimization", {}).get("stage", 0)
        return deepspeed_problem(stage, [k for k in ("optimizer", "scheduler") if k in config], "DeepSpeed")
    return None


def fsdp_over_gloo(accelerator) -> None:
    """The test hook (module doc): hand `accelerator` (MULTI_CPU over gloo) Accelerate's FSDP engine, the plugin
    built from the launcher's environment as Accelerate builds it on GPUs (mixed precision included)."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin
    PartialState().distributed_type = DistributedType.FSDP  # as AcceleratorState records it on GPUs


def check_model(accelerator, model) -> None:
    """RecipeError when FSDP's transformer-based auto wrap names a class that holds the input embeddings
    (BERT's _no_split_modules include BertEmbeddings): Accelerate's FSDP2 preparation shards that block, then
    the embeddings inside it again, and fails with a traceback."""
    if engine_of(accelerator) != FSDP:
        return
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plugin = accelerator.state.fsdp_plugin
    if getattr(plugin.auto_wrap_policy, "func", plugin.auto_wrap_policy) is not transformer_auto_wrap_policy:
        return
    names = set(plugin.transformer_cls_names_to_wrap or getattr(model, "_no_split_modules", None) or [])
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    holders = sorted({type(module).__name__ for module in model.modules() if type(module).__name__ in names
                      and module is not embeddings and any(inner is embeddings for inner in module.modules())})
    if embeddings is not None and holders:
        rest = ", ".join(sorted(names - set(holders))) or "the transformer layer class"
        raise RecipeError(f"FSDP: the layers to wrap ({', '.join(sorted(names))}: fsdp_transformer_layer_cls_to_wrap, "
                          f"by default the model's _no_split_modules) include {holders[0]}, which holds the input "
                          f"embeddings that Accelerate shards on their own; set fsdp_transformer_layer_cls_to_wrap: "
                          f"{rest}")


# --- what a recipe may ask under a sharded engine --------------------------------------------------------------


def check_recipe(recipe, accelerator) -> None:
    """RecipeError for what a sharded run cannot do (one line naming the key); nothing under DDP."""
    engine = engine_of(accelerator)
    if engine is None:
        return
    refused = [
        (recipe.method.name in ADAPTER_METHODS, f"method {recipe.method.name}",
         "the adapter is merged into full base weights at the end; use DDP (--processes N): the frozen base "
         "takes no optimizer state"),
        (recipe.task == "dpo", "task dpo", "its reference model is a second, unsharded copy of the model"),
        (recipe.transfer is not None, "transfer.watch", "it evaluates another run's model beside this one"),
        (recipe.baselines.scratch, "baselines: scratch", "it trains a second model in the same processes"),
        (recipe.method.compile != "none", f"method.compile: {recipe.method.compile}",
         "compiling sharded layers is not tested; set method.compile: none"),
    ]
    for hit, what, why in refused:
        if hit:
            raise RecipeError(f"{what} is not supported under {engine}: {why}")
    if engine == DEEPSPEED:
        check_deepspeed_recipe(recipe, accelerator.state.deepspeed_plugin)


def check_deepspeed_recipe(recipe, plugin) -> None:
    """The training settings DeepSpeed takes over from the loop must be the recipe's."""
    train = recipe.train
    if recipe.resume:
        raise RecipeError("resume is not supported under DeepSpeed: tunesmith writes no checkpoint there (the "
                          "partitioned optimizer state is in DeepSpeed's own pickled format); start over, or "
                          "use FSDP (fsdp_version: 2), whose runs resume")
    if train.on_nan == "skip":
        raise RecipeError("train.on_nan: skip is not supported under DeepSpeed (its engine steps inside the "
                          "backward pass, so a batch cannot be left out); use on_nan: stop")
    config = plugin.deepspeed_config
    for key, ours, name in (("gradient_accumulation_steps", train.grad_accumulation, "train.grad_accumulation"),
                            ("train_micro_batch_size_per_gpu", train.batch_size, "train.batch_size")):
        value = config.get(key, "auto")
        if value != "auto" and int(value) != ours:
            raise RecipeError(f"DeepSpeed config {key}: {value} but {name} is {ours}; set it to 'auto' (or {ours})")
    clipping = config.get("gradient_clipping", 0)  # left out of a DeepSpeed config file: no clipping
    clipping = 1.0 if clipping == "auto" else float(clipping or 0)  # Accelerate fills 'auto' with 1.0
    if clipping != float(train.max_grad_norm or 0):
        raise RecipeError(f"DeepSpeed clips gradients itself (gradient_clipping: {clipping:g}) but "
                          f"train.max_grad_norm is {train.max_grad_norm}; set gradient_clipping to "
                          f"{train.max_grad_norm or 0} in the Accelerate config (0 for none)")


# --- full weights and optimizer states under FSDP --------------------------------------------------------------


def _options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def full_model_state(accelerator, model) -> dict | None:
    """The model's full state dict (CPU tensors) on the main process, None on the others; every process must
    call it. FSDP: gathered (Accelerate's get_state_dict); otherwise the unwrapped model's own, main only."""
    if engine_of(accelerator) != FSDP:
        return accelerator.unwrap_model(model).state_dict() if accelerator.is_main_process else None
    state = accelerator.get_state_dict(model)  # full_state_dict, cpu_offload: rank 0 only
    return state if accelerator.is_main_process else None


def load_full_model_state(accelerator, model, state: dict):
    """Load a full state dict (every process holds it) into the model; keys it lacks (frozen weights) are kept.
    Returns (missing, unexpected) keys, as `load_state_dict(strict=False)` does."""
    if engine_of(accelerator) != FSDP:
        return accelerator.unwrap_model(model).load_state_dict(state, strict=False)
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    # one collective per tensor: every process in the model's order (safetensors' own order differs by process)
    ordered = {name: state[name] for name in model.state_dict() if name in state}
    ordered.update({name: tensor for name, tensor in state.items() if name not in ordered})
    return set_model_state_dict(model, ordered, options=_options(strict=False))


def _torch_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps it


def full_optimizer_state(accelerator, model, optimizer) -> dict | None:
    """FSDP: the optimizer's full state (keyed by parameter name), gathered on the main process (None on the
    others); every process must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, _torch_optimizer(optimizer), options=_options(cpu_offload=True))
    return state if accelerator.is_main_process else None


def load_full_optimizer_state(model, optimizer, state: dict) -> None:
    """FSDP: put a full optimizer state (every process holds it) back, each process keeping its shard."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, _torch_optimizer(optimizer), state, options=_options())


# --- what a checkpoint holds, under any engine ----------------------------------------------------------------


def checkpoint_weights(accelerator, model) -> dict | None:
    """The weights a checkpoint holds (checkpoint_state.model_tensors) on the main process, None on the others;
    every process must call it (FSDP gathers)."""
    from tunesmith.train.checkpoint_state import model_tensors

    plain = accelerator.unwrap_model(model)
    if engine_of(accelerator) != FSDP:
        return model_tensors(plain) if accelerator.is_main_process else None
    state = full_model_state(accelerator, model)
    return model_tensors(plain, state) if state is not None else None


def checkpoint_optimizer(accelerator, model, optimizer) -> dict | None:
    """The optimizer state a checkpoint holds, on the main process; every process must call it. FSDP: the full
    state keyed by parameter name; otherwise torch's own (the same on every process under DDP)."""
    if engine_of(accelerator) != FSDP:
        return optimizer.state_dict() if accelerator.is_main_process else None
    return full_optimizer_state(accelerator, model, optimizer)


def restore_checkpoint(accelerator, model, optimizer, weights: dict, optimizer_state: dict, where: str) -> None:
    """Put a checkpoint's weights and optimizer state back (every process holds them, each keeps its shard)."""
    from tunesmith.errors import CheckpointError
    from tunesmith.train.checkpoint_state import load_model_tensors

    if engine_of(accelerator) != FSDP:
        load_model_tensors(accelerator.unwrap_model(model), weights, where)
        optimizer.load_state_dict(optimizer_state)
        return
    current = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}  # global shapes
    missing = sorted({name for name, param in model.named_parameters() if param.requires_grad} - set(weights))
    unexpected = sorted(set(weights) - set(current))
    wrong = [name for name, tensor in weights.items() if current.get(name, tuple(tensor.shape)) != tuple(tensor.shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{where}: the checkpointed weights do not fit this model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, another shape {wrong[:3]}); was it saved by another "
                              f"model or task?")
    load_full_model_state(accelerator, model, weights)
    load_full_optimizer_state(model, optimizer, optimizer_state)
