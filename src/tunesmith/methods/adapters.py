"""A LoRA/DoRA run's saved adapter as a thing of its own: what it is, which base model it sits on, and its parts.

    saved = read_saved_adapter("runs/sst2")      # SavedAdapter: RUN/adapter, its PEFT config, its base model
    saved.base_sha256()                          # the base's identity: recorded at training, else computed now
    body, head = saved.split_state()             # the adapter matrices, and the task head (modules_to_save)

RUN/adapter holds PEFT's adapter_config.json and adapter_model.safetensors (the low-rank matrices, DoRA's
magnitudes, and the trained task head saved as `modules_to_save`), the tokenizer, and tunesmith_base.json:
the base model's directory and the sha256 of its weight files, written with every save (the hash is computed
once per base and process). Two adapters can share one base in memory only when these hashes are equal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tunesmith.errors import RunError, one_line

BASE_RECORD = "tunesmith_base.json"
BASE_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")  # what identifies a base: its weights, not its tokenizer
ADAPTER_KEYS = ("lora_A", "lora_B", "lora_magnitude_vector", "lora_embedding_A", "lora_embedding_B")


@dataclass(frozen=True)
class SavedAdapter:
    """RUN/adapter of a finished LoRA/DoRA run (or of a merge's task directory)."""

    run: Path
    config: dict  # adapter_config.json

    @property
    def path(self) -> Path:
        return self.run / "adapter"

    @property
    def base_dir(self) -> Path:
        return Path(str(self.config.get("base_model_name_or_path") or ""))

    @property
    def method(self) -> str:
        return "dora" if self.config.get("use_dora") else "lora"

    @property
    def rank(self) -> int:
        return int(self.config.get("r") or 0)

    @property
    def head_names(self) -> list[str]:
        """The top-level modules saved in full with the adapter (the task head), each once."""
        return list(dict.fromkeys(self.config.get("modules_to_save") or []))

    def recorded_base(self) -> dict:
        record = self.path / BASE_RECORD
        if not record.is_file():
            return {}
        try:
            value = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(f"{record}: cannot read it ({one_line(exc)})") from None
        return value if isinstance(value, dict) else {}

    def base_sha256(self) -> str:
        """The base's weights hash recorded when the adapter was saved; for an adapter saved before tunesmith
        recorded it, the hash of the weights now at the base path."""
        recorded = self.recorded_base().get("weights_sha256")
        return str(recorded) if recorded else weights_sha256(self.require_base())

    def require_base(self) -> Path:
        if not (self.base_dir / "config.json").is_file():
            raise RunError(f"{self.run}: the base model its adapter sits on, {self.base_dir} "
                           f"(adapter_config.json base_model_name_or_path), is not there any more")
        return self.base_dir

    def check_base_unchanged(self) -> None:
        """The weights at the base path are still those the adapter was trained on."""
        recorded = self.recorded_base().get("weights_sha256")
        if recorded and weights_sha256(self.require_base()) != recorded:
            raise RunError(f"{self.run}: the base model at {self.base_dir} has changed since the adapter was trained "
                           f"(its weights' sha256 differs from {BASE_RECORD}); use RUN/model (the adapter merged "
                           f"into the weights it was trained on) instead")

    def load_state(self) -> dict:
        from peft.utils import load_peft_weights

        return load_peft_weights(str(self.path), device="cpu")

    def split_state(self, state: dict | None = None) -> tuple[dict, dict]:
        """(adapter matrices, head weights) of the saved state; anything else is a RunError."""
        state = self.load_state() if state is None else state
        heads = tuple(f"base_model.model.{name}." for name in self.head_names)
        head = {k: v for k, v in state.items() if k.startswith(heads)}
        body = {k: v for k, v in state.items() if k not in head}
        odd = [k for k in body if not any(f".{part}" in k for part in ADAPTER_KEYS)]
        if odd:
            raise RunError(f"{self.path}: weights that are neither adapter matrices nor the saved head: {odd[:3]}")
        return body, head


def is_adapter_run(path) -> bool:
    return (Path(path) / "adapter" / "adapter_config.json").is_file()


def read_saved_adapter(run_path) -> SavedAdapter:
    """The adapter of a LoRA/DoRA run; a RunError naming the run when it has none."""
    run = Path(run_path)
    config_file = run / "adapter" / "adapter_config.json"
    if not config_file.is_file():
        raise RunError(f"{run}: no adapter (RUN/adapter/adapter_config.json): only LoRA/DoRA runs have one; "
                       f"was it trained with method lora or dora?")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{config_file}: cannot read it ({one_line(exc)})") from None
    if config.get("peft_type") != "LORA":
        raise RunError(f"{config_file}: a {config.get('peft_type')} adapter; tunesmith handles LoRA/DoRA adapters")
    return SavedAdapter(run, config)


def write_base_record(adapter_dir: Path, base_dir) -> None:
    """tunesmith_base.json beside a saved adapter: the base's directory and weights hash."""
    base = Path(str(base_dir))
    record = {"path": str(base), "weights_sha256": weights_sha256(base) if base.is_dir() else None}
    (Path(adapter_dir) / BASE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def weights_sha256(model_dir: Path) -> str:
    """sha256 over the names and bytes of a model directory's weight files (cached per file sizes and times)."""
    files = sorted({p for pattern in BASE_WEIGHT_PATTERNS for p in Path(model_dir).glob(pattern)})
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(str(Path(model_dir).resolve()), stamp)


@lru_cache(maxsize=16)
def _hash_files(model_dir: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(name.encode() + b"\0")
        with open(Path(model_dir) / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
