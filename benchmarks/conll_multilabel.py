"""Multi-label quality on real data: which entity types (PER / LOC / ORG / MISC, possibly none) occur in each
CoNLL-2003 sentence. MiniLM fine-tuned with examples/conll_entity_types.yaml against TF-IDF + one-vs-rest
logistic regression (both with thresholds tuned on validation = eng.testa, scored on test = eng.testb).

The data (research-only licence) is read from ../shared/data/conll2003 and converted to jsonl under --workdir
(default runs/data/conll_entity_types, gitignored; never committed): text = the sentence's tokens joined by
spaces, labels = the sorted set of entity types of its IOB1 tags.

    python benchmarks/conll_multilabel.py                  # convert, train, write benchmarks/results_conll_multilabel.json
    python benchmarks/conll_multilabel.py --prepare-only   # only convert (then: tunesmith train examples/...)

A quality measurement: the seconds it takes are not a timing benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
CONLL = REPO.parent / "shared" / "data" / "conll2003"
FILES = {"train": "eng.train", "testa": "eng.testa", "testb": "eng.testb"}
RECIPE = REPO / "examples" / "conll_entity_types.yaml"


def entity_types(tags) -> list[str]:
    """The sorted entity types of a sentence's IOB2 tags (B-PER, I-LOC, ... -> PER, LOC)."""
    return sorted({tag.split("-", 1)[1] for tag in tags if tag != "O"})


def convert(workdir: Path) -> dict[str, Path]:
    """eng.train / testa / testb -> WORKDIR/{train,testa,testb}.jsonl; returns the paths."""
    from tunesmith.config.recipe import DataSpec
    from tunesmith.data.token_data import read_token_file

    if not (CONLL / "eng.train").is_file():
        sys.exit(f"this benchmark needs {CONLL}/eng.train, eng.testa, eng.testb (CoNLL-2003 is not shipped: its "
                 f"licence is research-only)")
    workdir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, file in FILES.items():
        spec = DataSpec(train=str(CONLL / file), format="conll", tag_scheme="iob1", columns={"tokens": 0, "tags": 3})
        frame = read_token_file(spec, CONLL / file)
        path = workdir / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for tokens, tags in zip(frame["tokens"], frame["tags"]):
                handle.write(json.dumps({"text": " ".join(tokens), "labels": entity_types(tags)}) + "\n")
        out[name] = path
        print(f"{CONLL / file}: {len(frame)} sentences -> {path}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "data" / "conll_entity_types")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "conll_entity_types")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results_conll_multilabel.json")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    files = convert(args.workdir)
    if args.prepare_only:
        return 0

    from tunesmith.config.recipe import load_recipe
    from tunesmith.recipes.finetune import finetune

    overrides = [f"data.train={files['train']}", f"data.validation={files['testa']}", f"data.test={files['testb']}",
                 f"output={args.output}", "overwrite=true", *args.overrides]
    recipe = load_recipe(RECIPE, overrides)
    result = finetune(recipe)
    keys = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "mean_average_precision")
    baselines = result["baselines"]["test"]
    summary = {
        "task": "CoNLL-2003 sentence -> set of entity types (PER, LOC, ORG, MISC)",
        "recipe": str(RECIPE.relative_to(REPO)), "overrides": args.overrides,
        "data": result["data"], "model": recipe.model,
        "test": {
            "fine_tuned": {k: result["test"][k] for k in keys},
            "tfidf_ovr": {k: baselines["tfidf_ovr"][k] for k in keys},
            "modal_set": {k: baselines["modal_set"][k] for k in keys} | {"predicts": baselines["modal_set"]["predicts"]},
        },
        "per_label_test": result["test"]["per_label"],
        "validation_micro_f1 (optimistic: thresholds tuned there)": result["validation"]["micro_f1"],
        "thresholds": result["multi_label"]["thresholds"],
        "best": result["best"], "steps": result["steps"],
    }
    args.results.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary["test"], indent=2))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
