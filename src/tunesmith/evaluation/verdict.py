"""After training: did the model learn anything worth keeping? The quality verdict of a finished run.

The best model's validation metric (the early-stopping one) is compared with every reference point the run
measured on validation: the baselines (majority, TF-IDF, mean predictor) and, for language models, the
pretrained model. A model that does not beat the strongest of them by more than the margin, or whose
predictions collapse to one class, fails the verdict; the verdict then names the likely causes, most likely
first, each with the `--set` to try. It is printed in the summary, shown in the report and written to eval.json
("verdict"); with `quality_gate:` in the recipe a failed verdict is also a failure of the command (exit 3), the
model kept on disk and marked in eval.json.
"""

from __future__ import annotations

from tunesmith.config.method import DEFAULT_LR, default_lr


def strongest_reference(baselines: dict, metric: str, mode: str, only: str | None = None) -> tuple[str, float] | None:
    """(name, value) of the best reference point on `metric` (or of the one named `only`), None if none has it."""
    found = [(name, metrics[metric]) for name, metrics in baselines.items()
             if isinstance(metrics, dict) and isinstance(metrics.get(metric), (int, float))
             and (only in (None, "strongest") or name == only)]
    if not found:
        return None
    return (max if mode == "max" else min)(found, key=lambda item: item[1])


def collapsed_class(validation: dict) -> str | None:
    """The one class a classifier predicts for every validation row, when there are several true classes."""
    confusion = validation.get("confusion_matrix")
    if not isinstance(confusion, dict):
        return None
    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    predicted = [sum(row[j] for row in matrix) for j in range(len(labels))]
    true = [sum(row) for row in matrix]
    if sum(1 for count in true if count) > 1 and sum(1 for count in predicted if count) == 1:
        return labels[next(j for j, count in enumerate(predicted) if count)]
    return None


def likely_causes(recipe, result: dict) -> list[str]:
    """Why a run learns nothing, most likely first, each with what to try."""
    lr, method = recipe.train.lr, recipe.method
    own = default_lr(method)
    causes = []
    if lr * 3 <= own or lr >= own * 10:
        causes.append(f"the learning rate for the method: train.lr {lr:g} under {method.name}, whose default is "
                      f"{own:g} (full fine-tuning: {DEFAULT_LR['full']:g}); try --set train.lr={own:g}")
    else:
        causes.append(f"the learning rate: train.lr {lr:g} ({recipe.lr_source}); try --set train.lr={lr * 3:g} "
                      f"or --set train.lr={lr / 3:g}")
    steps, epochs = result.get("steps"), result.get("epochs")
    causes.append(f"too few steps: {steps} steps ({epochs} epochs); try --set train.epochs="
                  f"{max(2 * (epochs or 1), 1):g}")
    causes.append("labels shuffled against texts (a column mix-up, or rows sorted separately): check data.columns "
                  "and a few rows with `tunesmith inspect RECIPE`")
    length = result.get("max_length") or {}
    truncated = any(str(f).endswith(": truncation") for f in (result.get("inspect") or {}).get("findings", []))
    if length.get("used") and truncated:  # the inspection before training found texts longer than max_length
        causes.append(f"truncation: texts are cut to {length['used']} tokens; see the truncation finding of "
                      f"`tunesmith inspect RECIPE`, try --set train.max_length={min(2 * length['used'], 512)}")
    return causes


def quality_verdict(recipe, result: dict, metric: str, mode: str) -> dict:
    """eval.json "verdict": passed, why, the reference point, and the likely causes when it did not pass."""
    gate = recipe.quality_gate
    margin = gate.margin if gate else 0.0
    value = (result.get("validation") or {}).get(metric)
    reference = strongest_reference((result.get("baselines") or {}).get("validation") or {}, metric, mode,
                                    gate.beat if gate else None)
    problems = []
    if reference is not None and isinstance(value, (int, float)):
        name, baseline = reference
        gain = value - baseline if mode == "max" else baseline - value
        if gain <= margin:
            problems.append(f"validation {metric} {value:.4f} does not beat the {name} baseline ({baseline:.4f})"
                            + (f" by more than {margin:g}" if margin else ""))
    collapsed = collapsed_class(result.get("validation") or {})
    if collapsed is not None:
        problems.append(f"every validation prediction is '{collapsed}'")
    verdict = {"passed": not problems, "metric": metric, "value": value,
               "reference": {"name": reference[0], "value": reference[1]} if reference else None,
               "margin": margin, "gate": gate.model_dump() if gate else None, "problems": problems}
    if problems:
        verdict["likely_causes"] = likely_causes(recipe, result)
    return verdict


def verdict_lines(verdict: dict) -> list[str]:
    """The verdict as the lines the summary prints (nothing when it passed)."""
    if verdict.get("passed", True):
        return []
    lines = ["WARNING: this model may have learned nothing useful: " + "; ".join(verdict["problems"]) + "."]
    lines += [f"  likely cause {number}: {cause}" for number, cause in enumerate(verdict["likely_causes"], 1)]
    if verdict.get("gate"):
        lines.append("  quality_gate failed: the model is kept, and marked in eval.json (verdict.passed: false)")
    return lines
