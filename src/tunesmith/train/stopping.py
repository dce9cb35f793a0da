"""When to stop: a metric target reached, no improvement for `patience` evaluations, or an outside judge's
word (`tunesmith tune`'s pruner: recipes/tune.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

# (value, step) -> why to stop now, or None; called after each evaluation the stopper itself does not end
Judge = Callable[[float, int], Optional[str]]


@dataclass
class EarlyStopper:
    metric: str
    mode: str  # "max" or "min"
    patience: int | None = None
    target: float | None = None
    min_delta: float = 0.0
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    reason: str | None = None
    judge: Judge | None = field(default=None, repr=False, compare=False)  # not state: set anew by each process

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        gain = value - self.best if self.mode == "max" else self.best - value
        return gain > self.min_delta

    def update(self, value: float, step: int) -> bool:
        """Record one evaluation; return True when this is the new best."""
        is_best = self.improved(value)
        if is_best:
            self.best, self.best_step, self.bad_evals = value, step, 0
        else:
            self.bad_evals += 1
        if self.target is not None and (value >= self.target if self.mode == "max" else value <= self.target):
            self.reason = f"{self.metric} reached the target {self.target:g} ({value:.4f}) at step {step}"
        elif self.patience is not None and self.bad_evals >= self.patience:
            self.reason = (
                f"{self.metric} did not improve for {self.patience} evaluations "
                f"(best {self.best:.4f} at step {self.best_step})"
            )
        elif self.judge is not None:
            self.reason = self.judge(value, step)
        return is_best

    @property
    def should_stop(self) -> bool:
        return self.reason is not None

    def state_dict(self) -> dict:
        return {key: value for key, value in vars(self).items() if key != "judge"}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
