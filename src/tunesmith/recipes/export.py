"""`tunesmith export RUN --format merged|onnx|int8 [--max-drop 0.01] [--output DIR]`.

Each format is one module of tunesmith/export with `build(source, out_dir) -> dict`. Every export is then
loaded the way `tunesmith predict` loads it and re-evaluated on the run's validation set against the
unquantised model in RUN/model (export/report.py); the report goes to OUT/report.json and the console. With
`max_drop`, an export whose metric drops more is refused: nothing is written at OUT (an export already there
stays), the report is kept as OUT.rejected.json, and ExportRefused (exit status 2) says by how much.

Default OUT: RUN/exports/<format>. It is written to a temporary directory beside OUT and swapped in whole.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from tunesmith import __version__
from tunesmith.artifacts import replace_dir
from tunesmith.errors import DataError, RunError
from tunesmith.export import FORMATS, ExportRefused, ExportSource
from tunesmith.export import report as rep
from tunesmith.models.exported import MANIFEST, is_export_dir, load_export, weights_bytes
from tunesmith.recipes.predict import TrainedRun
from tunesmith.tasks import task_class


def export_run(run_path, fmt: str, *, output=None, max_drop: float | None = None,
               latency_examples: int | None = None, throughput_examples: int | None = None, echo=print,
               show=lambda report: None) -> dict:
    """Export a finished run, re-evaluate it, write OUT and OUT/report.json; return the report (`show` prints it)."""
    if fmt not in FORMATS:
        raise RunError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if max_drop is not None and not (math.isfinite(max_drop) and max_drop >= 0):
        raise RunError(f"--max-drop must be a finite number >= 0 (got {max_drop})")
    run_path = Path(run_path)
    if is_export_dir(run_path):
        raise RunError(f"{run_path} is an export, not a run directory: export from the run it came from")
    check_exportable(run_path)
    run = TrainedRun(run_path)  # the reference: RUN/model in torch fp32, and the run's task with its label map
    out = Path(output) if output else run_path / "exports" / fmt
    _check_output(out)
    task, recipe = run.task, run.recipe
    try:
        splits = task.load_data()
    except DataError as exc:
        raise DataError(f"{exc} (export re-evaluates on the run's validation set, rebuilt from the data: "
                        f"section of {run.run.recipe_path}; its paths are relative to where tunesmith runs)") from None
    task.use_trained(run.model)  # the run's label map and tuned threshold, as predict uses them
    dataset = task.encode(splits.validation, run.tokenizer)
    eval_batch = recipe.train.eval_batch_size or recipe.train.batch_size * 2
    limits = {"eval_batch": eval_batch, "latency_examples": latency_examples or rep.LATENCY_EXAMPLES,
              "throughput_examples": throughput_examples or rep.THROUGHPUT_EXAMPLES}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        echo(f"exporting {run_path} as {fmt} ...")
        source = ExportSource(run_path, run.run.model_dir, run.tokenizer, task.max_length,
                              recipe.trust_remote_code)
        info = FORMATS[fmt](source, staging)
        run.tokenizer.save_pretrained(staging)
        if not (staging / "config.json").is_file():
            shutil.copy2(run.run.model_dir / "config.json", staging / "config.json")
        shutil.copy2(run.run.recipe_path, staging / "recipe.yaml")
        manifest = {"format": fmt, "run": str(run_path.resolve()), "tunesmith": __version__, **info}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

        echo(f"re-evaluating on the validation set ({len(dataset)} examples): reference, then {fmt} ...")
        reference = rep.measure(run.model, task, dataset, run.tokenizer, **limits)
        exported_model, exported_tokenizer = load_export(staging, recipe.trust_remote_code)
        exported = rep.measure(exported_model, task, dataset, exported_tokenizer, **limits)
        metric = task.stop_metric
        verdict = rep.compare(reference, exported, metric=metric, mode=task.metric_mode(metric), max_drop=max_drop,
                              decisions=task.decisions)
        report = {
            "format": fmt, "run": str(run_path), "output": str(out), "split": "validation",
            "examples": len(dataset), "metric": metric, "device": "cpu", "threads": _threads(),
            "latency_examples": reference["latency_examples"], "throughput_examples": reference["throughput_examples"],
            "reference": {**rep.public(reference), "size_mb": _mb(weights_bytes(run.run.model_dir))},
            "export": {**rep.public(exported), "size_mb": _mb(weights_bytes(staging))},
            **verdict, "manifest": manifest,
        }
        del exported_model
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        if not report["passed"]:
            rejected = out.with_name(out.name + ".rejected.json")
            rejected.write_text(json.dumps(report, indent=2) + "\n")
            shutil.rmtree(staging, ignore_errors=True)
            show(report)
            raise ExportRefused(
                f"{fmt} export refused: validation {metric} drops by {report['drop']:.4f} "
                f"({reference['metrics'][metric]:.4f} -> {exported['metrics'][metric]:.4f}), more than --max-drop "
                f"{max_drop:g}; nothing written to {out}; report in {rejected}")
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    show(report)
    echo(f"wrote {out} (report: {out / 'report.json'}); use it with: tunesmith predict {out} --text ...")
    return report


def check_exportable(run_path: Path) -> None:
    """Only tasks whose class declares `exportable` (their re-evaluation is written for them) are exported."""
    recipe = run_path / "recipe.yaml"
    task = (yaml.safe_load(recipe.read_text()) or {}).get("task", "classification") if recipe.is_file() else None
    if task is not None and not task_class(task).exportable:
        raise RunError(f"{run_path} is a {task} run: tunesmith export handles classification runs; its RUN/model "
                       f"is already a plain Hugging Face model (LoRA merged)")


def _check_output(out: Path) -> None:
    if out.exists() and not (out.is_dir() and (is_export_dir(out) or not any(out.iterdir()))):
        raise RunError(f"--output {out} exists and is not an export directory: choose a new path")


def _mb(n: int) -> float:
    return round(n / 2**20, 2)


def _threads() -> int:
    return torch.get_num_threads()
