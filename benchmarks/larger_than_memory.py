"""Data larger than memory: causal_lm trains on a generated text corpus larger than the memory the run may use.

    python benchmarks/larger_than_memory.py                      # 3 GB corpus, 2 GB limit, tiny GPT-2 + word tokenizer
    python benchmarks/larger_than_memory.py --gigabytes 0.2      # a smoke run (a few minutes less)
    python benchmarks/larger_than_memory.py --model smollm2      # SmolLM2's own BPE tokenizer (about 10x slower)

The corpus (blank-line separated paragraphs of short random words: about 5 bytes per token, so the tokens take
about as much disk as the text) is written to a fresh directory under --workdir, trained on for a few steps by
`tunesmith train` in a child process, and removed afterwards with the run, the documents and the token cache
(TUNESMITH_TOKEN_CACHE points there). The result goes to benchmarks/results_cpu_larger_than_memory.json.

How the memory limit is imposed. RLIMIT_AS (`ulimit -v`, `prlimit --as`) limits address space, not memory:
importing torch alone reserves about 2.3 GB of it, and a memory-mapped token file larger than the limit could
not even be mapped, though only the pages a batch reads are ever resident. A cgroup (`systemd-run --scope -p
MemoryMax=2G ...`) is the right tool where one may create cgroups; here we may not. So a watchdog samples the
proportional set size (PSS: shared pages split between the processes sharing them, so forked tokenizing workers
are not counted twice) of the run's whole process tree from /proc/PID/smaps_rollup every 0.1 s and kills the
tree as soon as the sum passes the limit: the run is held to the limit as a cgroup would hold it (PSS includes
the file pages mapped in, which a cgroup would reclaim instead of killing). The exact peak of the largest single
process (ru_maxrss of the waited-for children) is recorded too. Times are indicative only: the machine has
2 cores shared with other jobs; the memory figures do not depend on that.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, emit  # noqa: E402

RESULTS = REPO / "benchmarks" / "results_cpu_larger_than_memory.json"
WORDS = 2000


def vocabulary(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = set()
    while len(words) < WORDS:
        words.add("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 7))))
    return sorted(words)


def write_corpus(path: Path, size: int, words: list[str], seed: int = 0) -> int:
    """Paragraphs of 1-8 lines of 6-16 words until `size` bytes; a 4 MB block is drawn once and repeated."""
    rng = random.Random(seed)
    block, length = [], 0
    while length < 4 * 2**20:
        lines = [" ".join(rng.choices(words, k=rng.randint(6, 16))) for _ in range(rng.randint(1, 8))]
        paragraph = "\n".join(lines) + "\n\n"
        block.append(paragraph)
        length += len(paragraph)
    data = "".join(block).encode()
    written = 0
    with open(path, "wb") as handle:
        while written < size:
            handle.write(data)
            written += len(data)
    return written


def tiny_model(directory: Path, words: list[str]) -> Path:
    """GPT-2 (n_embd 64, 2 layers) with a word-level tokenizer over `words` (eos </s>), safetensors."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<unk>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>",
                                        model_max_length=256)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=256, n_embd=64, n_layer=2, n_head=2,
                        bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# ---- the watchdog ------------------------------------------------------------------------------------------------

def tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def rollup(pid: int) -> dict[str, int]:
    """Rss, Pss and Pss_Anon of one process, in bytes (zeros when it has gone)."""
    values = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values


class Watchdog(threading.Thread):
    """Samples the process tree every `interval` s; kills its process group when the PSS sum passes `limit`."""

    def __init__(self, process: subprocess.Popen, limit: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.process, self.limit, self.interval = process, limit, interval
        self.peak = {"pss": 0, "anon": 0, "rss_one": 0, "processes": 0}
        self.exceeded = False

    def run(self) -> None:
        while self.process.poll() is None:
            samples = [rollup(pid) for pid in tree(self.process.pid)]
            pss = sum(s["Pss"] for s in samples)
            self.peak["pss"] = max(self.peak["pss"], pss)
            self.peak["anon"] = max(self.peak["anon"], sum(s["Pss_Anon"] for s in samples))
            self.peak["rss_one"] = max([self.peak["rss_one"], *(s["Rss"] for s in samples)])
            self.peak["processes"] = max(self.peak["processes"], len(samples))
            if pss > self.limit:
                self.exceeded = True
                os.killpg(self.process.pid, 9)
                return
            time.sleep(self.interval)


# ---- the run -----------------------------------------------------------------------------------------------------

def recipe(workdir: Path, model: str, corpus: Path, validation: Path, steps: int, num_proc: int) -> Path:
    import yaml

    text = {
        "model": model, "task": "causal_lm", "output": str(workdir / "run"),
        "data": {"train": str(corpus), "validation": str(validation)},
        "method": "full" if model != "smollm2" else "lora",
        "train": {"max_steps": steps, "batch_size": 8, "max_length": 256, "eval_every": steps, "log_every": 1,
                  "warmup": 0, "seed": 0},
        "lm": {"num_proc": num_proc, "sample_max_new_tokens": 8, "num_samples": 1},
        "report": {"html": False},
    }
    path = workdir / "recipe.yaml"
    path.write_text(yaml.safe_dump(text, sort_keys=False), encoding="utf-8")
    return path


def train_under_limit(recipe_path: Path, cache: Path, limit: int) -> dict:
    env = {**os.environ, "TUNESMITH_TOKEN_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    started, load = time.perf_counter(), os.getloadavg()[0]
    command = [sys.executable, "-c", "import sys; from tunesmith.cli import main; sys.exit(main(sys.argv[1:]))",
               "train", str(recipe_path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    watchdog = Watchdog(process, limit)
    watchdog.start()
    marks, lines = {}, []
    for line in process.stdout:
        now = time.perf_counter() - started
        lines.append(line.rstrip())
        print(f"[{now:7.1f}s] {line.rstrip()}", flush=True)
        if line.startswith("data:"):
            marks.setdefault("read_s", now)
        elif line.startswith("training "):
            marks.setdefault("setup_s", now)
    code = process.wait()
    watchdog.join()
    marks["total_s"] = time.perf_counter() - started
    marks["load_average_start"], marks["load_average_end"] = load, os.getloadavg()[0]
    return {"exit": code, "marks": marks, "watchdog": watchdog, "tail": lines[-5:],
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=3.0, help="corpus size (default 3)")
    parser.add_argument("--limit-gb", type=float, default=2.0, help="memory the run may use (default 2)")
    parser.add_argument("--model", default=None, help="a model (e.g. smollm2); default: a tiny GPT-2 built here")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    args = parser.parse_args()
    size, limit = int(args.gigabytes * 2**30), int(args.limit_gb * 2**30)
    free = shutil.disk_usage(args.workdir).free
    if free < 4 * size:
        sys.exit(f"{args.workdir} has {free / 2**30:.1f} GB free; this run needs about {4 * size / 2**30:.1f} GB "
                 f"(corpus, documents, tokens, blocks)")
    workdir = Path(tempfile.mkdtemp(prefix="tunesmith-larger-than-memory-", dir=args.workdir))
    try:
        words = vocabulary()
        t0 = time.perf_counter()
        written = write_corpus(workdir / "corpus.txt", size, words)
        validation = workdir / "validation.txt"
        write_corpus(validation, 64 * 2**10, words, seed=1)
        validation.write_bytes(validation.read_bytes()[: 64 * 2**10].rsplit(b"\n\n", 1)[0] + b"\n")
        generate_s = time.perf_counter() - t0
        model = args.model or str(tiny_model(workdir / "model", words))
        print(f"corpus: {written / 2**30:.2f} GB in {generate_s:.0f}s; limit {args.limit_gb:g} GB; model {model}",
              flush=True)
        run = train_under_limit(recipe(workdir, model, workdir / "corpus.txt", validation, args.steps,
                                       args.num_proc), workdir / "cache", limit)
        result = summary(args, written, limit, run, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    emit(result)
    if run["exit"] != 0:
        sys.exit(f"the run failed (exit {run['exit']}): " + " | ".join(run["tail"]))


def summary(args, written: int, limit: int, run: dict, workdir: Path) -> dict:
    watchdog = run["watchdog"]
    eval_path = workdir / "run" / "eval.json"
    result = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
    lm = result.get("lm", {}).get("splits", {}).get("train", {})
    mb = 2**20
    return {
        "benchmark": "larger_than_memory",
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "corpus_gb": round(written / 2**30, 3), "limit_gb": round(limit / 2**30, 3),
        "model": args.model or "tiny GPT-2 (n_embd 64, 2 layers), word-level tokenizer of 2000 words",
        "num_proc": args.num_proc, "steps": result.get("steps"), "exit": run["exit"],
        "killed_for_memory": watchdog.exceeded,
        "train_documents": lm.get("documents"), "train_tokens": lm.get("tokens"), "train_blocks": lm.get("blocks"),
        "token_file_gb": round(4 * lm["tokens"] / 2**30, 3) if lm.get("tokens") else None,
        "peak_tree_pss_mb": round(watchdog.peak["pss"] / mb), "peak_tree_anon_mb": round(watchdog.peak["anon"] / mb),
        "peak_one_process_rss_mb": round(max(watchdog.peak["rss_one"] / mb, run["ru_maxrss_mb"])),
        "processes": watchdog.peak["processes"],
        "seconds": {key: round(value, 1) for key, value in run["marks"].items()},
        "validation_loss": result.get("validation", {}).get("loss"),
        "note": "2 CPU cores shared with other jobs: times are indicative; memory is sampled every 0.1 s (PSS of "
                "the process tree) and ru_maxrss is exact for the largest single process",
    }


if __name__ == "__main__":
    main()
