"""onnx: the run's model as an ONNX graph that onnxruntime runs (fp32), tokenizer beside it.

Exported with PyTorch's TorchScript-based exporter (`torch.onnx.export(dynamo=False)`): the torch.export-based
default of PyTorch >= 2.9 fails on these Hugging Face models (data-dependent mask code), while the tracer
handles BERT, GPT-2 and Llama classifiers. Tracing records one path through the model, so:
- attention is exported as `eager` (no SDPA fast-path branches decided at trace time);
- the example batch has padding, so the attention-mask path is the one recorded;
- batch and sequence length are dynamic axes;
- the exported graph is checked against torch on a second, differently shaped batch before it is kept.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from tunesmith.errors import ModelError

OPSET = 17
CHECK_ATOL = 1e-4
EXAMPLE = ["a", "a b c d e f g h i j k l"]
CHECK = ["one two three four five six seven", "x", "the quick brown fox jumps over the lazy dog"]


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors):
        return self.model(**dict(zip(self.names, tensors))).logits


def load_eager(model_dir: Path, trust_remote_code: bool = False):
    """The run's model (a sequence or token classifier, as its config.json says) with eager attention, in eval
    mode, fp32."""
    import json

    import transformers

    from tunesmith.models import HEADS, head_of, quiet_transformers

    auto_class = getattr(transformers, HEADS[head_of(json.loads((Path(model_dir) / "config.json").read_text()))])
    with quiet_transformers():
        model = auto_class.from_pretrained(
            model_dir, local_files_only=True, use_safetensors=True, attn_implementation="eager",
            trust_remote_code=trust_remote_code, dtype=torch.float32)
    return model.eval()


def export_onnx(model, tokenizer, path: Path, max_length: int = 128) -> dict:
    """Write `model` (a sequence or token classifier) to `path`; return {"inputs": [...], "check_max_abs_diff": x}."""
    example = tokenizer(EXAMPLE, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in example]
    wrapper = _LogitsOnly(model, names).eval()  # eval() matters: the exporter restores the wrapper's mode
    with torch.no_grad():  # a token classifier's logits have a sequence axis too
        per_token = wrapper(*(example[n] for n in names)).dim() == 3
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch", 1: "sequence"} if per_token
                                                              else {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings; the graph is checked below
        torch.onnx.export(wrapper, tuple(example[n] for n in names), str(path), dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=["logits"], dynamic_axes=axes, do_constant_folding=True)
    model.eval()
    diff = check_onnx(model, tokenizer, path, names, max_length)
    if diff > CHECK_ATOL:
        raise ModelError(f"the ONNX graph disagrees with the torch model (max |logit difference| {diff:.2e} > "
                         f"{CHECK_ATOL:g}); this architecture does not trace cleanly")
    return {"inputs": names, "opset": OPSET, "check_max_abs_diff": diff}


def check_onnx(model, tokenizer, path: Path, names, max_length: int) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = tokenizer(CHECK, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        expected = model(**{n: batch[n] for n in names}).logits.float().numpy()
    got = session.run(None, {n: batch[n].numpy().astype(np.int64) for n in names})[0]
    return float(np.abs(got - expected).max())


def build(source, out: Path) -> dict:
    model = load_eager(source.model_dir, source.trust_remote_code)
    return export_onnx(model, source.tokenizer, out / "model.onnx", source.max_length)
