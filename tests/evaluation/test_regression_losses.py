"""regression_loss: mse, huber and l1 against their definitions, in float32 whatever the input dtype."""

from __future__ import annotations

import pytest
import torch

from tunesmith.evaluation.regression_losses import LOSSES, regression_loss

PRED = torch.tensor([[0.0, 1.0], [3.0, -1.0]])
TARGET = torch.tensor([[0.5, 1.0], [0.0, 1.0]])  # errors 0.5, 0, 3, 2


def test_each_loss_by_hand():
    assert LOSSES == ("mse", "huber", "l1")
    assert regression_loss("mse", PRED, TARGET).item() == pytest.approx((0.25 + 0 + 9 + 4) / 4)
    assert regression_loss("l1", PRED, TARGET).item() == pytest.approx((0.5 + 0 + 3 + 2) / 4)
    # huber, delta 1: 0.5 e^2 below 1, |e| - 0.5 above
    assert regression_loss("huber", PRED, TARGET).item() == pytest.approx((0.125 + 0 + 2.5 + 1.5) / 4)
    assert regression_loss("huber", PRED, TARGET, delta=2.0).item() == pytest.approx((0.125 + 0 + 4 + 2) / 4)


def test_bf16_predictions_give_a_float32_loss_with_gradients():
    pred = PRED.to(torch.bfloat16).requires_grad_()
    loss = regression_loss("mse", pred, TARGET)
    assert loss.dtype == torch.float32
    loss.backward()
    assert pred.grad is not None and pred.grad.shape == PRED.shape


def test_unknown_name_and_shape_mismatch():
    with pytest.raises(ValueError, match="unknown regression loss 'l2'; choose from mse, huber, l1"):
        regression_loss("l2", PRED, TARGET)
    with pytest.raises(ValueError, match=r"predictions \(2, 2\) and targets \(4,\) differ in shape"):
        regression_loss("mse", PRED, TARGET.reshape(-1))
