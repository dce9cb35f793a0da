"""`tunesmith plan RECIPE --quality`: besides the cost, what each method learns in a short real run.

After plan.py has measured and projected every candidate's cost, each candidate that fits the budgets trains
a short real budget on the recipe's data (`--quality-budget`: a fraction of an epoch, default 0.25, at least
100 steps; or a number of optimizer steps, `200steps`; never more than the recipe's own steps) with `finetune`, the run's own code, on a recipe derived from the
validated one (which is never changed): the candidate's method and its learning rate (the recipe's train.lr
when it sets one, else the method's default), `train.max_steps` = the budget, the schedule (warmup, decay)
compressed into it, one evaluation at the end, no baselines, report, quality gate, test set, inspection or
kept checkpoints, in a temporary directory removed afterwards; what the run prints is captured (its warnings
are kept with the scores). The score is the task's early-stopping metric
(task.stop_metric, maximised or minimised as metric_mode says) on a seeded sample of the validation rows
(`--quality-rows`, default 512: data.validation.max_rows). Each method runs with `--quality-seeds` seeds
(default 3: train.seed, +1, +2); a seed changes the initialisation, the batch order, the validation sample
and a held-out split, and every method sees the same ones, so the scores' spread is the noise of the probe.

The recommendation (`recommend_by_quality`): among the candidates that fit, the best mean score; a candidate
that cannot be told from it (its mean and its worst seed within the probe's noise of the best's; the noise: the
median of the candidates' standard deviations over seeds) and that is materially cheaper (projected time at most
90% of the best's) is preferred. The reason gives the gap to the next candidate against the noise, in numbers
and words (clear: 3x the noise or more; probable: 1-3x; too close to call), and names methods unstable across
seeds (sd over 3x the noise). The strength order plan.py assumes (STRENGTH) does not decide here.
"""

from __future__ import annotations

import contextlib
import gc
import io
import math
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tunesmith.config.method import MethodSpec
from tunesmith.config.recipe import Recipe, validate_recipe
from tunesmith.errors import TrainingInterrupted, TunesmithError, shown
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.plan import PlanError, format_duration, plan
from tunesmith.recipes.tune_space import apply_values, base_mapping
from tunesmith.tasks import make_task

DEFAULT_BUDGET = "0.25"  # of an epoch
# a budget in epochs trains at least this many steps: on SST-2 (2,000 rows, MiniLM) every method was still at
# chance after 16 steps (a quarter of its 63-step epoch), so the probe could not rank anything (docs/benchmarks.md)
MIN_EPOCH_BUDGET_STEPS = 100
DEFAULT_SEEDS = 3
DEFAULT_ROWS = 512
CLEAR = 3.0  # a gap of this many times the probe's noise or more is "clear"
# a candidate that cannot be told from the best mean replaces it only when its projected time is at most this
# share of the best's: on MiniLM/SST-2 the probe could not tell lora from full (0.7686 vs 0.7695) where full
# runs put full 1.8 points ahead; lora's projected time was 96% of full's (docs/benchmarks.md)
MATERIALLY_CHEAPER = 0.9


@dataclass(frozen=True)
class QualityProbe:
    """How long each probe trains (a fraction of an epoch, or optimizer steps), with how many seeds, scored on
    how many validation rows."""

    epochs: float | None = 0.25
    steps: int | None = None
    seeds: int = DEFAULT_SEEDS
    rows: int = DEFAULT_ROWS

    def steps_for(self, steps_per_epoch: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(MIN_EPOCH_BUDGET_STEPS, math.ceil(self.epochs * steps_per_epoch))


def quality_probe(budget: str = DEFAULT_BUDGET, seeds: int = DEFAULT_SEEDS, rows: int = DEFAULT_ROWS) -> QualityProbe:
    """The probe from --quality-budget ('0.25', '0.5epoch', '200steps'), --quality-seeds, --quality-rows."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?|\.\d+)\s*(epochs?|steps?)?", budget.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise PlanError(f"--quality-budget {shown(budget)}: expected a fraction of an epoch (0.25, 0.5epoch) or a "
                        f"number of steps (200steps), more than 0")
    if seeds < 1:
        raise PlanError("--quality-seeds must be at least 1")
    if rows < 1:
        raise PlanError("--quality-rows must be at least 1")
    if (match.group(2) or "epoch").startswith("step"):
        if not float(match.group(1)).is_integer():
            raise PlanError(f"--quality-budget {shown(budget)}: a number of steps is a whole number")
        return QualityProbe(epochs=None, steps=int(float(match.group(1))), seeds=seeds, rows=rows)
    return QualityProbe(epochs=float(match.group(1)), seeds=seeds, rows=rows)


def plan_with_quality(recipe: Recipe, probe: QualityProbe, *, echo=print, **plan_options) -> dict:
    """plan() (measured cost), then a quality probe of every candidate that fits; the recommendation by quality."""
    result = plan(recipe, echo=echo, **plan_options)
    task = make_task(recipe)
    metric = task.stop_metric
    mode = task.metric_mode(metric)
    steps = min(probe.steps_for(result["steps_per_epoch"]), result["total_steps"])  # never more than the run's
    rows = min(probe.rows, recipe.data.validation.max_rows or probe.rows)
    fitting = [row for row in result["candidates"] if row["fits"]]
    budget = "" if probe.steps is not None else f" ({probe.epochs:g} epoch, at least {MIN_EPOCH_BUDGET_STEPS} steps)"
    echo(f"quality probe: {len(fitting)} methods x {probe.seeds} seeds x {steps} steps{budget}, "
         f"validation {metric} on at most {rows} rows; about "
         f"{format_duration(probe.seeds * sum(steps * row['step_s'] for row in fitting))} of training")
    with tempfile.TemporaryDirectory(prefix="tunesmith-plan-quality-") as tmp:
        for index, row in enumerate(result["candidates"]):
            if not row["fits"]:
                row["quality"] = {"skipped": "not measured" if "error" in row else "does not fit the budget"}
                continue
            spec = MethodSpec(**row["spec"])
            echo(f"  probing {spec.describe()} ...")
            row["quality"] = probe_method(recipe, spec, probe, steps=steps, rows=rows, workdir=Path(tmp) / str(index))
            warnings = row["quality"].get("warnings", [])
            echo(f"    {metric} {score_words(row['quality'])}"
                 + (f"; {len(warnings)} warnings, e.g. {warnings[0][:100]}" if warnings else ""))
    previous = (result["recommended"] or {}).get("method")
    if fitting:
        result["recommended"], result["reason"] = recommend_by_quality(result["candidates"], mode, metric)
    result["quality"] = {**asdict(probe), "steps": steps, "validation_rows": rows, "metric": metric, "mode": mode,
                         "lr_source": "the recipe" if recipe.lr_source == "the recipe" else "each method's default",
                         "by_strength_alone": previous}
    result["quality"]["confidence"] = confidence(result)
    return result


def probe_recipe(recipe: Recipe, spec: MethodSpec, *, steps: int, seed: int, rows: int, output: Path) -> Recipe:
    """The recipe of one probe run, derived from the validated recipe (left as it is)."""
    values = {"method": spec.model_dump(mode="json"), "output": str(output), "resume": False, "overwrite": False,
              "baselines": False, "quality_gate": None, "report.html": False, "report.trackers": [],
              "checkpoint.keep_on_finish": False, "inspect.enabled": False, "data.test": None,
              "data.validation.max_rows": rows, "train.max_steps": steps, "train.eval_every": steps,
              "train.seed": seed}
    return validate_recipe(apply_values(base_mapping(recipe), values), "plan --quality")


def probe_method(recipe: Recipe, spec: MethodSpec, probe: QualityProbe, *, steps: int, rows: int,
                 workdir: Path) -> dict:
    """Train `spec` for `steps` steps once per seed; the validation scores per seed, their summary, seconds."""
    seeds = [(recipe.train.seed + k) % 2**32 for k in range(probe.seeds)]
    scores: list[float] = []
    seconds: list[float] = []
    found = {"steps": steps, "seeds": seeds, "scores": scores, "seconds": seconds}
    for seed in seeds:
        derived = probe_recipe(recipe, spec, steps=steps, seed=seed, rows=rows, output=workdir / f"seed-{seed}")
        found.update(lr=derived.train.lr, lr_source=derived.lr_source)
        started = time.perf_counter()
        said = io.StringIO()  # the run's progress bars and notes; its warnings are kept with the scores
        try:
            with contextlib.redirect_stdout(said), contextlib.redirect_stderr(io.StringIO()):
                outcome = finetune(derived, echo=lambda *_args, **_kwargs: None)
        except TrainingInterrupted:
            raise
        except (TunesmithError, RuntimeError) as exc:  # a NaN loss, out of memory: this method's probe failed
            return {**found, "error": f"seed {seed}: {' '.join(str(exc).split())[:300]}"}
        finally:
            shutil.rmtree(derived.output, ignore_errors=True)
            gc.collect()
            kept = [line for line in said.getvalue().splitlines() if line.lower().startswith("warning")]
            found["warnings"] = list(dict.fromkeys(found.get("warnings", []) + [f"seed {seed}: {w}" for w in kept]))
        value = outcome["best"]["value"]
        if value is None:
            return {**found, "error": f"seed {seed}: no validation {outcome['best']['metric']}"}
        seconds.append(round(time.perf_counter() - started, 2))
        scores.append(float(value))
        found["validation_rows"] = outcome["data"]["validation"]
    return {**found, **summarise(scores)}


def summarise(scores: list[float]) -> dict:
    """mean, sd (sample standard deviation; None for one score), min and max."""
    return {"mean": statistics.fmean(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else None,
            "min": min(scores), "max": max(scores)}


def score_words(quality: dict) -> str:
    if "mean" not in quality:
        return quality.get("error") or quality.get("skipped", "")
    spread = f" ± {quality['sd']:.4f}" if quality["sd"] is not None else " (1 seed)"
    return f"{quality['mean']:.4f}{spread}"


# ---- the recommendation ----------------------------------------------------------------------------------


def probe_noise(rows: list[dict]) -> float | None:
    """The probe's noise: the median of the probed candidates' standard deviations over seeds (one method that
    is unstable across seeds does not inflate it); None with one seed."""
    sds = [row["quality"]["sd"] for row in rows if row["quality"]["sd"] is not None]
    return statistics.median(sds) if sds else None


def certainty(gap: float, noise: float | None) -> tuple[str, str]:
    """(a word, the end of "the gap G is ...") on how sure a gap between two mean scores is, against the noise."""
    if noise is None:
        return "unknown", ("not measured against any noise (one seed each): how sure this is is unknown "
                           "(--quality-seeds 2 or more)")
    if noise == 0:
        if gap > 0:
            return "clear", "against no noise at all (the seeds scored the same): a clear difference"
        return "too close to call", "nothing, and the seeds scored the same: no difference"
    ratio = gap / noise
    if ratio >= CLEAR:
        return "clear", f"{ratio:.1f}x the probe's noise (sd {noise:.4f}): a clear difference"
    if ratio >= 1:
        return "probable", f"{ratio:.1f}x the probe's noise (sd {noise:.4f}): probably real, not certain"
    return "too close to call", f"{ratio:.1f}x the probe's noise (sd {noise:.4f}): too close to call"


def as_good(best: dict, row: dict, noise: float | None, sign: int) -> bool:
    """`row` cannot be told from `best`: its mean and its worst seed are within the noise of the best's."""
    worst = "min" if sign == 1 else "max"
    mine, theirs = row["quality"], best["quality"]
    return (sign * (theirs["mean"] - mine["mean"]) <= (noise or 0.0)
            and sign * (theirs[worst] - mine[worst]) <= (noise or 0.0))


def recommend_by_quality(rows: list[dict], mode: str, metric: str) -> tuple[dict | None, str]:
    """Among the candidates that fit and were probed: the best mean score, or a materially cheaper one that cannot
    be told from it; the reason, with how sure it is. Candidates that do not fit are never chosen."""
    sign = 1 if mode == "max" else -1
    scored = [row for row in rows if row["fits"] and "mean" in row.get("quality", {})]
    tail = "".join(f"; {note}" for note in side_notes(rows, scored))
    if not scored:
        return None, "no quality probe finished" + tail
    ranked = sorted(scored, key=lambda row: (-sign * row["quality"]["mean"], row["total_s"]))
    best, noise = ranked[0], probe_noise(scored)
    ties = [row for row in ranked[1:] if as_good(best, row, noise, sign)]
    cheaper = [row for row in ties if row["total_s"] <= MATERIALLY_CHEAPER * best["total_s"]]
    if cheaper:
        choice = min(cheaper, key=lambda row: (row["total_s"], row["peak_bytes"]))
        gap = sign * (best["quality"]["mean"] - choice["quality"]["mean"])
        return choice, (f"{_described(choice, metric)} cannot be told from the best mean, "
                        f"{_described(best, metric)}: the gap {gap:.4f} is {certainty(gap, noise)[1]}, and its worst "
                        f"seed is as close, so the cheaper one is recommended{tail}")
    if len(ranked) == 1:
        return best, f"{_described(best, metric)} is the only candidate that fits and was probed{tail}"
    runner = ranked[1]
    gap = sign * (best["quality"]["mean"] - runner["quality"]["mean"])
    stays = ""
    if runner in ties and runner["total_s"] < best["total_s"]:
        stays = f" (and it is not at least {1 - MATERIALLY_CHEAPER:.0%} cheaper, so the best mean stays)"
    return best, (f"{_described(best, metric)} has the best mean; the next, {_described(runner, metric)}, "
                  f"is {gap:.4f} behind; the gap is {certainty(gap, noise)[1]}{stays}{tail}")


def side_notes(rows: list[dict], scored: list[dict]) -> list[str]:
    """Probes that failed, candidates over the budget, and methods unstable across seeds."""
    failed = [row for row in rows if row["fits"] and "error" in row.get("quality", {})]
    over = [row["method"] for row in rows if not row["fits"] and "error" not in row]
    noise = probe_noise(scored) if scored else None
    unstable = [row for row in scored if noise and row["quality"]["sd"] is not None
                and row["quality"]["sd"] > CLEAR * noise]
    notes = []
    if failed:
        notes.append("probe failed: " + ", ".join(f"{row['method']} ({row['quality']['error']})" for row in failed))
    if over:
        notes.append(f"not probed, over the budget: {', '.join(over)}")
    if unstable:
        notes.append("unstable across seeds: " + ", ".join(
            f"{row['method']} ({row['quality']['min']:.4f} to {row['quality']['max']:.4f})" for row in unstable))
    return notes


def _described(row: dict, metric: str) -> str:
    quality = row["quality"]
    return (f"{row['method']} ({metric} {score_words(quality)} over {len(quality['scores'])} seeds, "
            f"projected {format_duration(row['total_s'])})")


def confidence(result: dict) -> dict | None:
    """The gap between the recommended candidate and the best other probed one, against the probe's noise."""
    chosen = result.get("recommended")
    scored = [row for row in result["candidates"] if row["fits"] and "mean" in row["quality"]]
    others = [row for row in scored if row is not chosen]
    if not chosen or "mean" not in chosen.get("quality", {}) or not others:
        return None
    sign = 1 if result["quality"]["mode"] == "max" else -1
    other = max(others, key=lambda row: sign * row["quality"]["mean"])
    gap = sign * (chosen["quality"]["mean"] - other["quality"]["mean"])
    noise = probe_noise(scored)
    return {"against": other["method"], "gap": gap, "noise": noise, "words": certainty(abs(gap), noise)[0]}
