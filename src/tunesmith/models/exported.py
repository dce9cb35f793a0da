"""Loading an exported directory for inference: `tunesmith predict EXPORT_DIR` and the export report.

An export directory (written by `tunesmith export`) holds:

    export.json        what it is: {"format": "merged" | "onnx" | "int8", "run": ..., "inputs": [...]}
    recipe.yaml        the run's recipe (how predict/evaluate read data files)
    config.json        the run's model config: label map, tuned threshold
    tokenizer files
    model.onnx         onnx / int8: the graph onnxruntime runs (inputs: token ids, mask; output: logits)
    model.safetensors  merged: a plain Hugging Face model
    report.json        the export report (metric delta, size, latency, throughput)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tunesmith.errors import RunError

MANIFEST = "export.json"
ONNX_FILE = "model.onnx"
WEIGHT_SUFFIXES = (".onnx", ".onnx.data", ".data", ".safetensors", ".bin")


def is_export_dir(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path) -> dict:
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable {MANIFEST} ({exc})") from None


def weights_bytes(path) -> int:
    """Size on disk of the model's weights (graph + external data, or safetensors), tokenizer excluded."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


class OnnxClassifier(torch.nn.Module):
    """An ONNX sequence (or token) classifier behind the interface of a Hugging Face one: `model(**batch)` returns
    `.logits` (and `.loss` when `labels` are given), and `model.config` is the run's config. It holds no
    parameters; inputs are moved to the CPU for onnxruntime and the outputs back to the inputs' device."""

    def __init__(self, onnx_path, config, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = config

    def forward(self, labels=None, **inputs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise RunError(f"the ONNX model needs inputs {missing} that the tokenizer did not produce")
        device = next(iter(inputs.values())).device
        feed = {n: np.ascontiguousarray(inputs[n].detach().cpu().numpy().astype(np.int64)) for n in self.input_names}
        logits = torch.from_numpy(self.session.run(None, feed)[0]).to(device)
        loss = None
        if labels is not None:  # N x C and N labels, or N x L x C and N x L labels (-100: ignored)
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                     labels.to(device).reshape(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


def load_export(path, trust_remote_code: bool = False):
    """(model, tokenizer) for an export directory; the model answers `model(**batch).logits`."""
    from transformers import AutoConfig

    from tunesmith.models import load_tokenizer, load_trained_classifier
    from tunesmith.models.checks import check_vocabulary, embedding_rows

    path = Path(path)
    manifest = read_manifest(path)
    fmt = manifest.get("format")
    if fmt == "merged":
        return load_trained_classifier(path, trust_remote_code=trust_remote_code)
    if fmt in ("onnx", "int8"):
        if not (path / ONNX_FILE).is_file():
            raise RunError(f"{path}: {ONNX_FILE} is missing from this {fmt} export")
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
        model, tokenizer = OnnxClassifier(path / ONNX_FILE, config).eval(), load_tokenizer(path, trust_remote_code)
        check_vocabulary(tokenizer, embedding_rows(model), path)  # the graph's embedding: config.vocab_size
        return model, tokenizer
    raise RunError(f"{path}: unknown export format {fmt!r} in {MANIFEST}")
