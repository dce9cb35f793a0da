"""Several saved LoRA/DoRA adapters on one base model in memory, switched between (`tunesmith predict A B ...`).

    check_shared_base(adapters)                   # one base for all (the sha256 of its weights), else a RunError
    model, tokenizer = load_bank(adapters, names) # PeftModel: the base once, each adapter under its name
    model.set_adapter(names[1], inference_mode=True)   # run B's adapter and head answer until switched again

The base model is built once from the first adapter's base directory. The first adapter is loaded with PEFT's
`PeftModel.from_pretrained`, each further one with `add_adapter` + `set_peft_model_state_dict` (what PEFT's
`load_adapter` does) under its own name. Each run's task head is saved in its adapter (`modules_to_save`):
PEFT keeps one copy of the head per adapter and switches it with the adapter. Heads of other shapes (another
number of labels) are given their own Linear layers of the saved shape before the weights are loaded, since
PEFT copies the first run's head for each adapter. Only the active adapter is computed, so a switched
adapter gives bit for bit the outputs of that adapter loaded alone on the base (tests/tasks/test_adapters.py).
"""

from __future__ import annotations

from tunesmith.errors import RunError, one_line
from tunesmith.methods.adapters import SavedAdapter
from tunesmith.models import head_of, load_for_classification, trained_head


def check_shared_base(adapters: list[SavedAdapter]) -> str:
    """The sha256 of the base all the adapters sit on; a RunError naming the runs when they do not share one."""
    hashes = [adapter.base_sha256() for adapter in adapters]
    for adapter, sha in zip(adapters[1:], hashes[1:]):
        if sha != hashes[0]:
            raise RunError(f"{adapters[0].run} and {adapter.run} do not share a base model ({adapters[0].base_dir}, "
                           f"weights sha256 {hashes[0][:12]}; {adapter.base_dir}, {sha[:12]}): adapters switch only "
                           f"on the base they were trained on; predict with each run on its own")
    adapters[0].check_base_unchanged()
    return hashes[0]


def head_kind(adapter: SavedAdapter) -> str:
    """"sequence" or "token": the head class the run's model was saved with (RUN/model/config.json)."""
    import json

    config = adapter.run / "model" / "config.json"
    if not config.is_file():
        raise RunError(f"{adapter.run}: no trained model config in {config} (did training finish?)")
    return head_of(json.loads(config.read_text(encoding="utf-8")))


def load_bank(adapters: list[SavedAdapter], names: list[str], *, trust_remote_code: bool = False):
    """(PeftModel in eval mode holding every adapter under its name, the base's tokenizer)."""
    from peft import PeftModel

    from tunesmith.methods.lora import quiet_peft

    kinds = {adapter.run: head_kind(adapter) for adapter in adapters}
    if len(set(kinds.values())) > 1:
        shown = ", ".join(f"{run} ({kind} classifier)" for run, kind in kinds.items())
        raise RunError(f"{shown}: one base model in memory holds one kind of head (sequence or token "
                       f"classification); predict with each kind on its own")
    first = adapters[0]
    base, tokenizer = load_for_classification(first.require_base(), **trained_head(first.run / "model"),
                                              trust_remote_code=trust_remote_code)
    with quiet_peft():
        model = PeftModel.from_pretrained(base, first.path, adapter_name=names[0])
        for adapter, name in zip(adapters[1:], names[1:]):
            add_saved_adapter(model, adapter, name)
    return model.eval(), tokenizer


def add_saved_adapter(model, adapter: SavedAdapter, name: str) -> None:
    """`adapter` (weights and head) added to the PeftModel `model` under `name`, frozen, not yet active."""
    from peft import PeftConfig, set_peft_model_state_dict

    config = PeftConfig.from_pretrained(str(adapter.path))
    config.inference_mode = True
    model.add_adapter(name, config)
    state = adapter.load_state()
    _, head = adapter.split_state(state)
    fit_heads(model, name, head, adapter)
    try:
        result = set_peft_model_state_dict(model, state, adapter_name=name)
    except RuntimeError as exc:  # a head whose shape differs in more than its Linear layers
        raise RunError(f"{adapter.run}: its adapter does not fit the base model of the other runs: "
                       f"{one_line(exc)[:300]}") from None
    missing = [k for k in result.missing_keys if f".{name}." in k or k.endswith(f".{name}")]
    if result.unexpected_keys or missing:
        raise RunError(f"{adapter.run}: its adapter does not fit the base model of the other runs (unexpected "
                       f"{result.unexpected_keys[:2]}, missing {missing[:2]})")


def fit_heads(model, name: str, head: dict, adapter: SavedAdapter) -> None:
    """Give adapter `name`'s copy of each saved head module Linear layers of the saved shapes (another label
    count than the first run's); PEFT made the copy from the base model's head."""
    import torch

    for head_name, wrapper in model.base_model.model.named_children():
        copies = getattr(wrapper, "modules_to_save", None) if head_name in adapter.head_names else None
        if copies is None or name not in copies:
            continue
        for sub_name, module in list(copies[name].named_modules()):
            key = f"base_model.model.{head_name}.{sub_name + '.' if sub_name else ''}weight"
            if not isinstance(module, torch.nn.Linear) or key not in head or head[key].shape == module.weight.shape:
                continue
            out_features, in_features = head[key].shape
            fitted = torch.nn.Linear(in_features, out_features, bias=module.bias is not None,
                                     dtype=module.weight.dtype, device=module.weight.device)
            if sub_name:
                copies[name].set_submodule(sub_name, fitted)
            else:
                copies[name] = fitted
