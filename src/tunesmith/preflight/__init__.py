"""Preflight: checks run after the model, method and data are set up, before the first training step.

The failures users of fine-tuning tools report most are runs that finish, look healthy and learned nothing: a
classification head left random after a LoRA reload, an end-of-turn token never trained, answers truncated to
nothing, a chat template that differs between training and generation, a full-fine-tuning learning rate under
LoRA. Each check below looks for one of them and reports findings (data/findings.Finding: a code, a severity,
one line). Errors stop the run before it trains (PreflightError, exit 2) unless `preflight.ignore` names their
code; warnings are printed; all of it lands in RUN/inspect.json ("preflight") and the report.

A check is one function `check(context) -> list[Finding]` in one of the modules below plus one line in CHECKS
(tests/preflight/ plants each fault and asserts its finding). Checks that do not apply to the run (no task head,
no chat template) return nothing. Every check leaves the model, the data and every random generator exactly as it
found them (`preserved_rng`, and the probes restore the weights), so a run with preflight trains the same
weights as one without.
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from tunesmith.config.preflight import PREFLIGHT_CODES
from tunesmith.data.findings import Finding, FindingsReport
from tunesmith.errors import PreflightError
from tunesmith.artifacts import write_text_atomic
from tunesmith.preflight.context import PreflightContext
from tunesmith.preflight.head import check_head_round_trip, check_head_trainable
from tunesmith.preflight.lm_targets import (check_chat_template_round_trip, check_end_token_trained,
                                            check_generation_template, check_zero_targets)
from tunesmith.preflight.loss_probe import check_loss_falls
from tunesmith.preflight.model_fit import check_max_length, check_padding_side, check_vocabulary_range
from tunesmith.preflight.settings import check_training_settings

# name -> check, in the order they run (the loss probe last: it is the only one that trains)
CHECKS = {
    "vocabulary_range": check_vocabulary_range,  # first: ids past the embedding would crash the checks that run it
    "head_trainable": check_head_trainable,
    "head_round_trip": check_head_round_trip,
    "end_token_trained": check_end_token_trained,
    "zero_targets": check_zero_targets,
    "chat_template_round_trip": check_chat_template_round_trip,
    "generation_template": check_generation_template,
    "padding_side": check_padding_side,
    "max_length": check_max_length,
    "training_settings": check_training_settings,
    "loss_probe": check_loss_falls,
}

RUN_THE_MODEL = ("head_round_trip", "padding_side", "loss_probe")  # skipped after an error (not an ignored one)

__all__ = ["CHECKS", "PreflightContext", "PreflightError", "PreflightReport", "record_in_inspect", "run_preflight"]


@dataclass
class PreflightReport(FindingsReport):
    findings: list[Finding] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # the checks that ran
    skipped: list[str] = field(default_factory=list)  # checks that run the model, left out after an error
    ignored: list[str] = field(default_factory=list)  # error codes preflight.ignore turned into warnings


@contextlib.contextmanager
def preserved_rng():
    """Every random generator a run draws from (python, numpy, torch CPU and CUDA) as it was before."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def run_preflight(context: PreflightContext, echo=print, *, sharded: bool = False) -> PreflightReport:
    """Run every check (when preflight.enabled), print errors and warnings, raise PreflightError on errors that
    preflight.ignore does not list. `sharded` (FSDP: each forward pass needs every process, and preflight runs
    on the main one): the checks that run the model are left out, said in a note and listed as skipped."""
    spec = context.recipe.preflight
    report = PreflightReport()
    if not spec.enabled:
        return report
    if sharded:
        echo(f"note: preflight under FSDP leaves out the checks that run the model ({', '.join(RUN_THE_MODEL)}): "
             f"each forward pass needs every process")
    with preserved_rng():
        for name, check in CHECKS.items():
            if name in RUN_THE_MODEL and (sharded or report.of("error")):
                report.skipped.append(name)
                continue
            found = check(context)
            unknown = [f.code for f in found if f.code not in PREFLIGHT_CODES]
            if unknown:
                raise AssertionError(f"preflight check {name} reported unlisted codes {unknown}")
            for finding in found:
                if finding.severity == "error" and finding.code in spec.ignore:
                    finding.severity = "warning"
                    report.ignored.append(finding.code)
            report.checks.append(name)
            report.findings += found
    report.findings.sort(key=lambda f: ("error", "warning", "info").index(f.severity))
    for finding in report.findings:
        if finding.severity in ("error", "warning"):
            echo(f"preflight {finding.severity}: [{finding.code}] {finding.message}")
    errors = report.of("error")
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more above)" if len(errors) > 1 else ""
        raise PreflightError(f"preflight: [{first.code}] {first.message}{more}; nothing was trained. Fix it, or "
                             f"list the code under preflight.ignore to train anyway")
    return report


def record_in_inspect(run_path, report: PreflightReport) -> None:
    """RUN/inspect.json gains "preflight" (the task's data inspection, when it wrote one, is kept as it is)."""
    path = run_path / "inspect.json"
    try:
        current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        current = {}
    current = current if isinstance(current, dict) else {"inspection": current}
    current["preflight"] = report.to_dict()
    write_text_atomic(path, json.dumps(current, indent=2, default=str) + "\n")
