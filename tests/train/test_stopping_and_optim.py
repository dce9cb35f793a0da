"""Early stopping decisions and the optimizer / schedule registry."""

import pytest
import torch

from tunesmith.config.recipe import TrainSpec
from tunesmith.train.optim import OPTIMIZERS, build_optimizer, build_schedule, warmup_steps
from tunesmith.train.stopping import EarlyStopper


def test_patience_counts_evaluations_without_improvement():
    stopper = EarlyStopper("macro_f1", "max", patience=2)
    assert stopper.update(0.5, 10) is True
    assert stopper.update(0.6, 20) is True
    assert stopper.update(0.55, 30) is False and not stopper.should_stop
    assert stopper.update(0.6, 40) is False and stopper.should_stop
    assert stopper.best == 0.6 and stopper.best_step == 20
    assert "did not improve for 2 evaluations" in stopper.reason


def test_target_stops_and_min_mode():
    stopper = EarlyStopper("loss", "min", target=0.1)
    stopper.update(0.5, 1)
    assert not stopper.should_stop
    assert stopper.update(0.09, 2) is True and stopper.should_stop
    assert "reached the target 0.1" in stopper.reason


def test_min_delta():
    stopper = EarlyStopper("accuracy", "max", patience=1, min_delta=0.01)
    stopper.update(0.80, 1)
    assert stopper.update(0.805, 2) is False and stopper.should_stop


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_steps_and_skips_decay_on_biases(name):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    settings = TrainSpec(optimizer=name, lr=0.1, weight_decay=0.5)
    optimizer = build_optimizer(model, settings)
    decayed, not_decayed = optimizer.param_groups
    assert len(decayed["params"]) == 2  # linear weight, and the LayerNorm weight is named "1.weight"
    assert not_decayed["weight_decay"] == 0.0 and decayed["weight_decay"] == 0.5
    before = model[0].weight.detach().clone()
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model[0].weight)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_schedules_warm_up_then_follow_their_shape(schedule):
    model = torch.nn.Linear(2, 2)
    settings = TrainSpec(lr=1.0, warmup=0.1, schedule=schedule)
    optimizer = build_optimizer(model, settings)
    sched = build_schedule(optimizer, settings, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        optimizer.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5)
    assert lrs[10] == pytest.approx(1.0)
    if schedule == "constant":
        assert lrs[-1] == pytest.approx(1.0)
    else:
        assert lrs[-1] < 0.05


def test_warmup_as_steps_or_fraction():
    assert warmup_steps(TrainSpec(warmup=0.06), 100) == 6
    assert warmup_steps(TrainSpec(warmup=25), 100) == 25


@pytest.mark.parametrize("name,fused", [("adamw", True), ("adam", True), ("sgd", True), ("rmsprop", None)])
def test_fused_kernels_where_torch_has_them(name, fused):
    model = torch.nn.Linear(4, 2)
    optimizer = build_optimizer(model, TrainSpec(optimizer=name, lr=5e-5))  # (a recipe fills lr from its method)
    assert optimizer.defaults.get("fused") is fused


def test_fused_adamw_takes_the_same_step_as_the_plain_one():
    torch.manual_seed(0)
    a = torch.nn.Linear(8, 3)
    b = torch.nn.Linear(8, 3)
    b.load_state_dict(a.state_dict())
    initial = a.weight.detach().clone()
    fused = build_optimizer(a, TrainSpec(lr=1e-2))
    plain = torch.optim.AdamW([{"params": [b.weight], "weight_decay": 0.01}, {"params": [b.bias], "weight_decay": 0.0}],
                              lr=1e-2, fused=False)
    x = torch.randn(16, 8)
    for _ in range(3):
        for model, optimizer in ((a, fused), (b, plain)):
            model(x).pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    torch.testing.assert_close(a.weight, b.weight, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(a.weight, initial)  # the steps moved the weights
