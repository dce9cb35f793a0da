"""Run by tests/data/test_lm_streaming.py in a fresh process: read, tokenize and pack one causal_lm corpus as
`tunesmith train` does, then print the peak resident memory of this process (VmHWM) and of its largest
tokenizing worker (ru_maxrss of the waited-for children: forked from this process, they count the pages they
share with it).

    python lm_memory_probe.py CORPUS TOKENIZER_DIR CACHE_DIR [stream|whole]

`whole` first reads the corpus into one Python string (what the streaming path avoids): the control that shows
the probe sees a file held in memory. Parts are 4 MB of text (32 MB in a run), so that a 20 MB corpus is
tokenized by worker processes too.
"""

import json
import os
import resource
import sys
from pathlib import Path


def own_peak_kb() -> int:
    """VmHWM: the peak resident memory of this process since it started (exec). Not ru_maxrss: Linux carries the
    forking process's peak across fork + exec into it (a probe started by a pytest that had grown to 800 MB
    would report 800 MB)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))


def main() -> None:
    corpus, tokenizer_dir, cache, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    os.environ["TUNESMITH_TOKEN_CACHE"] = cache
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.data import doc_table
    from tunesmith.data.token_cache import encode_splits
    from tunesmith.models import load_tokenizer
    from tunesmith.tasks import make_task

    doc_table.PART_BYTES = 4 * 2**20
    held = Path(corpus).read_text(encoding="utf-8") if mode == "whole" else None
    recipe = validate_recipe({"model": tokenizer_dir, "task": "causal_lm", "output": str(Path(cache) / "run"),
                              "data": {"train": corpus, "validation": {"split": 0.05}},
                              "train": {"max_length": 128}, "lm": {"num_proc": 2}})
    task = make_task(recipe)
    splits = task.load_data()
    datasets = encode_splits(task, splits.frames(), load_tokenizer(Path(tokenizer_dir)), echo=lambda line: None)
    print(json.dumps({
        "self_mb": own_peak_kb() / 1024,
        "workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "documents": len(splits.train) + len(splits.validation),
        "blocks": {name: len(dataset) for name, dataset in datasets.items()},
        "stats": task.encode_summary()["splits"], "held_chars": len(held or ""),
    }))


if __name__ == "__main__":
    main()
