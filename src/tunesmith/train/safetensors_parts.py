"""A safetensors file as a list of buffers (the header, then a zero-copy view of each tensor), to stream to disk.

safetensors' own `save` (0.8) serializes into one buffer and copies it into `bytes`: a checkpoint of a full
fine-tune (fp32 weights and Adam's two moments, 1.6 GB for a 135M model) briefly held two more copies, the
highest memory mark of the whole run. `save_file` writes without a copy but in native code, where a full disk
is not an OSError this package can report. These parts are written by train/checkpoint_store.py in chunks, as
any other file, and are read back by the safetensors library itself (the format is its documented one: an
8-byte little-endian header length, a JSON header padded with spaces to 8 bytes, the tensors' bytes in order).
Tensors are laid out as safetensors lays them out (by dtype, the 8-byte ones first, then by name), so every
tensor starts aligned to its element size and the bytes equal `safetensors.torch.save`'s (tested; with several
metadata keys safetensors orders them as its hash map does, so only the header's content is the same).
"""

from __future__ import annotations

import json
import struct

import torch

# safetensors' names, in the order it lays tensors out (its Dtype enum, descending; then by name)
DTYPES = {torch.int64: "I64", torch.float64: "F64", torch.float32: "F32", torch.int32: "I32", torch.bfloat16: "BF16",
          torch.float16: "F16", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
LAYOUT_RANK = {dtype: rank for rank, dtype in enumerate(DTYPES)}


def safetensors_parts(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> list:
    """[header bytes, one memoryview per tensor]: b"".join(parts) is the safetensors file of `tensors` (CPU,
    contiguous). The views share the tensors' memory: keep the tensors unchanged until the parts are written."""
    for name, tensor in tensors.items():
        if tensor.dtype not in DTYPES:
            raise TypeError(f"{name}: dtype {tensor.dtype} is not written to checkpoints")
    order = sorted(tensors, key=lambda name: (LAYOUT_RANK[tensors[name].dtype], name))
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset, views = 0, []
    for name in order:
        tensor = tensors[name]
        if tensor.device.type != "cpu" or not tensor.is_contiguous():
            raise ValueError(f"{name}: only contiguous CPU tensors are written")
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
        if size:
            views.append(tensor_bytes(tensor))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return [struct.pack("<Q", len(text)) + text, *views]


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """A contiguous CPU tensor's own memory as bytes, no copy (writable: reading into it sets the tensor)."""
    return memoryview(tensor.detach().reshape(-1).view(torch.uint8).numpy())
