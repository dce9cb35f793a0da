"""Regional compilation (`method.compile: regional`): torch.compile of the model's repeated transformer block,
compiled once and reused by every layer (PyTorch's "regional compilation" recipe; torchtune's
`training.compile_model` compiles each layer the same way).

What is compiled: each block of the model's list of repeated transformer blocks (Llama `model.layers`, GPT-2
`transformer.h`, BERT `encoder.layer`): the nn.ModuleLists whose blocks are all of one class that transformers
names in `_no_split_modules`, else the longest nn.ModuleList of one class. Under LoRA/DoRA these are the
blocks of the PEFT-wrapped model, the adapters inside them. All blocks share one compiled forward: Dynamo
treats each block's parameters as inputs, so the graph compiled for the first block serves every other one
(under LoRA the first block's input needs no gradient and the others' do: two graphs).

How: each compiled block's `forward` (an instance attribute, `CompiledForward`) runs the class's forward
through `torch.compile` when the block is training with gradients enabled, and the class's forward as it is
otherwise. So:
- parameters and module names are untouched: state_dict keys, checkpoints, RUN/model and the adapter are
  those of an eager run (no `_orig_mod.` prefix), and a resumed run compiles again;
- evaluations, the preflight probes and generation run eager: their numbers are an eager run's, and
  generation's KV cache (a recompile per layer and per length) is never traced;
- a copy of the model (`copy.deepcopy`) is compiled too, on its own weights.

Neither `accelerate.utils.compile_regions` nor `compile_regions_deepspeed` (accelerate 1.15) fits: the first
wraps every block in an OptimizedModule (the state_dict keys gain `_orig_mod.`), both compile the rest of the
model as well (embeddings, norms, the LM head), and they compile every forward, evaluations and generation included.

With `method.gradient_checkpointing` the compiled forward is transformers' checkpointed one: Dynamo traces
`torch.utils.checkpoint` into the graph and the compiled backward recomputes the block (same gradients as eager,
tests/methods/test_regional_compile.py).

The backward graph is compiled with the forward one, not lazily at the first backward
(`torch._functorch.config.force_non_lazy_backward_lowering`, set process-wide), so the whole compile cost falls
in the first training forward, and a compiler that fails (no C++ compiler for the CPU backend, no
Triton on a GPU, an operation it cannot lower) stops the run there with one TrainingError line. Each model
compiled starts from an empty in-memory compile cache (`torch.compiler.reset`): the earlier models' graphs
(tune trials, tests) would count towards Dynamo's recompile limit; the on-disk kernel cache stays.
"""

from __future__ import annotations

from tunesmith.errors import RecipeError, TrainingError, one_line
from tunesmith.methods.base import plain_model

COMPILED_FORWARDS: dict[type, object] = {}  # block class -> torch.compile(class.forward), shared by every block
TORCH_COMPILER_MODULES = ("torch._dynamo", "torch._inductor")
FIX = "set method.compile: none to train without compiling"


def repeated_blocks(model) -> list[tuple[str, object]]:
    """(dotted name, nn.ModuleList) of each list of repeated transformer blocks in `model` (under DDP or PEFT:
    the wrapped model's, adapters included), outermost first; RecipeError when there is none."""
    import torch

    inner = plain_model(model)
    block_classes = set(getattr(inner, "_no_split_modules", None) or ())
    uniform = [(name, module) for name, module in inner.named_modules()
               if isinstance(module, torch.nn.ModuleList) and len(module) > 0
               and len({type(block) for block in module}) == 1]
    named = [(name, blocks) for name, blocks in uniform if type(blocks[0]).__name__ in block_classes]
    if not named:
        longest = max(uniform, key=lambda item: len(item[1]), default=None)
        named = [longest] if longest is not None and len(longest[1]) > 1 else []
    if not named:
        raise RecipeError(f"method.compile: regional: {type(inner).__name__} has no list of repeated transformer "
                          f"blocks to compile; {FIX}")
    chosen = []
    for name, blocks in named:  # a list inside a chosen block is compiled with it
        if not any(name.startswith(f"{outer}.") for outer, _ in chosen):
            chosen.append((name, blocks))
    return chosen


def compile_repeated_blocks(model) -> str:
    """Compile every repeated transformer block of `model` in place (see the module docstring); returns what was
    compiled, e.g. '30 x LlamaDecoderLayer (model.layers)'."""
    import torch

    found = repeated_blocks(model)
    torch.compiler.reset()
    compile_backward_with_forward()
    for _, blocks in found:
        for block in blocks:
            if "forward" in vars(block) and not isinstance(vars(block)["forward"], CompiledForward):
                raise RecipeError(f"method.compile: regional: {type(block).__name__} has its forward replaced "
                                  f"already (hooks of another library); {FIX}")
            compiled_forward(type(block))
            block.forward = CompiledForward(block)
    return ", ".join(f"{len(blocks)} x {type(blocks[0]).__name__} ({name})" for name, blocks in found)


def compiled_forward(block_class):
    """torch.compile of `block_class.forward` (one per class, made once)."""
    import torch

    if block_class not in COMPILED_FORWARDS:
        try:
            COMPILED_FORWARDS[block_class] = torch.compile(block_class.forward)
        except RuntimeError as exc:  # e.g. a Python version Dynamo does not support yet
            raise RecipeError(f"method.compile: regional: torch.compile is not available here ({one_line(exc)}); "
                              f"{FIX}") from exc
    return COMPILED_FORWARDS[block_class]


def is_compiled(block) -> bool:
    return isinstance(vars(block).get("forward"), CompiledForward)


class CompiledForward:
    """A compiled block's `forward`: training with gradients, the compiled forward; otherwise the eager one."""

    def __init__(self, block):
        self.block = block  # a reference cycle the garbage collector breaks; copies and pickles rebind it

    def __call__(self, *args, **kwargs):
        import torch

        block = self.block
        if not (block.training and torch.is_grad_enabled()):
            return type(block).forward(block, *args, **kwargs)
        try:
            return compiled_forward(type(block))(block, *args, **kwargs)
        except Exception as exc:
            message = compile_failure(exc, type(block).__name__)
            if message is None:
                raise
            raise TrainingError(message) from exc


def compile_backward_with_forward() -> None:
    """From now on AOTAutograd compiles a graph's backward with its forward, not at its first backward: compile
    errors surface in the forward, where CompiledForward turns them into one line. Process-wide (patching it around
    each call costs ~20-60 us a block a step); it changes only graphs with a backward, and only when they are
    compiled. Nothing where the torch version lacks the flag."""
    try:
        import torch._functorch.config as functorch_config
    except ImportError:
        return
    if hasattr(functorch_config, "force_non_lazy_backward_lowering"):
        functorch_config.force_non_lazy_backward_lowering = True


def compile_failure(exc: BaseException, block: str = "the transformer block") -> str | None:
    """The one-line message for `exc` when torch.compile (Dynamo, Inductor) raised it, else None."""
    if not any(cls.__module__.startswith(TORCH_COMPILER_MODULES) for cls in type(exc).__mro__):
        return None
    first = " ".join(str(exc).strip().split("\n\n")[0].split())  # before Dynamo's 'Set TORCHDYNAMO_VERBOSE=1'
    detail = f"{type(exc).__name__}: {first[:400]}" if first else type(exc).__name__
    backend = any(cls.__name__ == "BackendCompilerFailed" for cls in type(exc).__mro__)  # Inductor's, not tracing
    hint = "the CPU backend needs a C++ compiler (g++, or $CXX), a GPU needs Triton; or " if backend else ""
    return f"method.compile: regional: torch.compile failed on {block} ({detail}); {hint}{FIX}"
