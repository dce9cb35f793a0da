"""The first-steps loss probe (tunesmith/preflight/loss_probe.py) on real data: does it tell a learning rate that
learns from one that does not, before any training? For each (dataset, method, lr): the probe's losses on one
fixed batch of 32 (dropout off, 8 steps), and the relative fall (1 - last/first); the probe warns below 2%.
Quality of the same settings after training is in docs/benchmarks.md (method defaults, issue 17 scenario).

    python benchmarks/preflight_probe.py --json benchmarks/results_cpu_preflight_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import require_shared  # noqa: E402

from tunesmith.config.recipe import validate_recipe  # noqa: E402
from tunesmith.preflight import PreflightContext  # noqa: E402
from tunesmith.preflight.loss_probe import MIN_FALL, probe_losses  # noqa: E402
from tunesmith.recipes.finetune import FineTune  # noqa: E402

DATASETS = {
    "ag_news": {"train": "ag_news/test.csv", "format": "csv", "header": False, "columns": {"label": 0, "text": 1}},
    "sms_spam": {"train": "sms_spam/SMSSpamCollection", "format": "tsv", "header": False,
                 "columns": {"label": 0, "text": 1}},
}
SETTINGS = [("full", None), ("full", 1e-6), ("lora", None), ("lora", 1e-4), ("lora", 5e-5), ("bitfit", None),
            ("dora", None)]


def probe(dataset: str, method: str, lr: float | None, out: Path) -> dict:
    spec = DATASETS[dataset]
    data = {**spec, "train": str(require_shared(spec["train"].split("/")[0]) / spec["train"].split("/", 1)[1]),
            "validation": {"split": 0.2, "stratify": True}}
    train = {"epochs": 1, "batch_size": 32, "max_length": 64, "seed": 0, **({"lr": lr} if lr else {})}
    recipe = validate_recipe({"model": "minilm", "data": data, "train": train, "method": {"name": method},
                              "baselines": False, "report": {"html": False}, "preflight": {"enabled": False},
                              "output": str(out)})
    run = FineTune(recipe, echo=lambda line: None)
    run.setup()
    context = PreflightContext(recipe, run.task, run.accelerator.unwrap_model(run.model), run.tokenizer, run.method,
                               run.splits, run.datasets, run.plan.total_steps)
    losses, _ = probe_losses(context, context.fixed_batch("train"), 8, None)
    fall = 1 - losses[-1] / losses[0]
    return {"dataset": dataset, "method": method, "lr": recipe.train.lr, "lr_source": recipe.lr_source,
            "losses": [round(x, 4) for x in losses], "fall": round(fall, 4), "warns": fall < MIN_FALL}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in DATASETS:
            for method, lr in SETTINGS:
                row = probe(dataset, method, lr, Path(tmp) / f"{dataset}-{method}-{lr}")
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        args.json.write_text(json.dumps({"command": "python benchmarks/preflight_probe.py", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
