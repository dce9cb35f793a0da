"""Encoded language-model examples in an Arrow file, memory-mapped through `datasets`.

`ArrowDataset(directory)` opens `directory/data.arrow` with `datasets.Dataset.from_file`: the rows stay on
disk and the operating system pages in the ones a batch reads, so a training set larger than memory is
batched, shuffled and resumed exactly as an in-memory `EncodedDataset` (same `len`, rows as dicts of token-id
lists, `lengths()` for the length-grouped sampler). Pages read this way are file-backed: the kernel drops them
under memory pressure, and `content_fingerprint()` (what checkpoints compare on resume) reads the file
through buffered reads instead of touching every row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from tunesmith.data.arrow_files import TemporaryTree, file_sha256

DATA_FILE = "data.arrow"


class ArrowDataset(Dataset):
    """Rows of `directory/data.arrow`; `temporary`: the directory is removed when this dataset is dropped."""

    def __init__(self, directory: Path, *, temporary: TemporaryTree | None = None):
        import datasets

        self.directory = Path(directory)
        self.temporary = temporary
        self.rows = datasets.Dataset.from_file(str(self.directory / DATA_FILE))
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return self.rows.num_rows

    def __getitem__(self, index: int) -> dict:
        return self.rows[int(index)]

    def __getitems__(self, indices) -> list[dict]:
        """A batch of rows in one read (torch's DataLoader asks for a batch this way)."""
        return self.rows.__getitems__([int(i) for i in indices])

    def lengths(self) -> np.ndarray:
        """Tokens per row, from the Arrow list offsets (the token ids themselves are not read)."""
        import pyarrow.compute as pc

        return pc.list_value_length(self.rows.data.column("input_ids")).to_numpy().astype(np.int64)

    def column_names(self) -> list[str]:
        return list(self.rows.column_names)

    def content_fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = file_sha256(self.directory / DATA_FILE)
        return self._fingerprint

    def moved(self, directory: Path) -> "ArrowDataset":
        """This dataset, opened again where its directory was moved to (the temporary directory is gone)."""
        if self.temporary is not None:
            self.temporary.keep()
        return ArrowDataset(directory)
