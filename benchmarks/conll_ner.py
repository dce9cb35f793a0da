"""CoNLL-2003 English NER with the packaged MiniLM: the shipped example recipe, timed, against its baselines.

Runs examples/conll2003.yaml as `tunesmith train` runs it (train eng.train, validation eng.testa, test
eng.testb, read from ../shared/data/conll2003: not shipped, research-only licence), with both token baselines
(the majority tag of each word and the CRF over word features) on the same splits. Writes one JSON object:
test entity F1 / precision / recall (seqeval strict IOB2), the validation F1 after every epoch (metrics.jsonl),
the baselines' test F1, and the seconds (whole run, training steps, evaluations, the CRF's fit). The issue's
target: test F1 >= 0.88 in under 30 minutes on 2 CPU cores; `passed` says whether this run met both.

    python benchmarks/conll_ner.py                               # writes benchmarks/results_cpu_conll_ner.json
    python benchmarks/conll_ner.py --set train.epochs=3 --output /tmp/conll.json
    python benchmarks/conll_ner.py --quick                       # 40 steps, no CRF: a smoke run, not a result

Run it alone on the machine: its seconds are the figure it exists for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, peak_rss_mb, require_shared  # noqa: E402

RECIPE = REPO / "examples" / "conll2003.yaml"
TARGET_F1, TARGET_S = 0.88, 30 * 60


def run(overrides: list[str], out_dir: Path) -> dict:
    from tunesmith.config.recipe import load_recipe
    from tunesmith.recipes.finetune import finetune

    os.chdir(REPO)  # the recipe's ../shared/data paths are relative to the checkout
    recipe = load_recipe(RECIPE, [*overrides, f"output={out_dir}", "report.html=false"])
    started = time.perf_counter()
    result = finetune(recipe, echo=lambda *a: None)
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    per_epoch = [{"epoch": r["epoch"], "f1": round(r["f1"], 4)} for r in records
                 if r.get("type") == "eval" and r.get("split") == "validation" and not r.get("final")]
    test, baselines = result["test"], result["baselines"].get("test", {})
    return {
        "benchmark": "conll_ner", "model": recipe.model, "recipe": str(RECIPE.relative_to(REPO)),
        "overrides": overrides,
        "test": {k: round(test[k], 4) for k in ("f1", "precision", "recall", "token_accuracy")},
        "test_per_type_f1": {k: round(v["f1"], 4) for k, v in test["per_type"].items()},
        "validation_f1_per_epoch": per_epoch,
        "baselines_test_f1": {name: round(b["f1"], 4) for name, b in baselines.items() if "f1" in b},
        "crf_fit_s": baselines.get("crf", {}).get("fit_s"),
        "seconds": {"total": round(seconds, 1), "train_steps": result["timing"]["train_s"],
                    "evaluations": result["timing"]["eval_s"]},
        "steps": result["steps"], "environment": result["environment"], "peak_rss_mb": round(peak_rss_mb(), 1),
        "passed": test["f1"] >= TARGET_F1 and seconds <= TARGET_S,
        "target": {"test_f1": TARGET_F1, "seconds": TARGET_S},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of examples/conll2003.yaml (repeatable)")
    parser.add_argument("--quick", action="store_true", help="40 steps and no CRF: checks the script, measures nothing")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results_cpu_conll_ner.json")
    args = parser.parse_args(argv)
    require_shared("conll2003")
    overrides = list(args.overrides) + (["train.max_steps=40", "baselines.tfidf=false"] if args.quick else [])
    with tempfile.TemporaryDirectory(prefix="conll-ner-") as tmp:
        result = run(overrides, Path(tmp) / "run")
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if not args.quick:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
