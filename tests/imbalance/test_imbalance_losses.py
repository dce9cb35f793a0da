"""Losses and class weights against values computed by hand (math module, not torch)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tunesmith.errors import RecipeError
from tunesmith.imbalance.losses import ImbalanceLoss
from tunesmith.imbalance.weights import class_weights, focal_alpha

LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
LABELS = torch.tensor([0, 1])
# -log softmax by hand: row 0 gold 0: log(1 + e^-2); row 1 gold 1: log(1 + e^-1)
NLL0, NLL1 = math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1))
P0, P1 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1))  # probability of the gold class


def test_plain_cross_entropy():
    loss = ImbalanceLoss("ce")(LOGITS, LABELS)
    assert loss.item() == pytest.approx((NLL0 + NLL1) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(0.2200951, abs=1e-6)
    assert loss.item() == pytest.approx(F.cross_entropy(LOGITS, LABELS).item(), abs=1e-6)


def test_weighted_cross_entropy_is_the_weighted_mean():
    loss = ImbalanceLoss("ce", weights=[1.0, 3.0])(LOGITS, LABELS)
    assert loss.item() == pytest.approx((1 * NLL0 + 3 * NLL1) / 4, abs=1e-6)
    assert loss.item() == pytest.approx(0.2666781, abs=1e-6)
    torch_loss = F.cross_entropy(LOGITS, LABELS, weight=torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx(torch_loss.item(), abs=1e-6)


def test_focal_loss():
    loss = ImbalanceLoss("focal", gamma=2.0)(LOGITS, LABELS)
    expected = ((1 - P0) ** 2 * NLL0 + (1 - P1) ** 2 * NLL1) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.0122308, abs=1e-6)
    assert ImbalanceLoss("focal", gamma=0.0)(LOGITS, LABELS).item() == pytest.approx((NLL0 + NLL1) / 2, abs=1e-6)


def test_focal_loss_with_alpha_weights():
    alpha = focal_alpha(0.25, ["neg", "pos"], positive=1)
    assert alpha.tolist() == [0.75, 0.25]
    loss = ImbalanceLoss("focal", gamma=2.0, weights=alpha)(LOGITS, LABELS)
    expected = (0.75 * (1 - P0) ** 2 * NLL0 + 0.25 * (1 - P1) ** 2 * NLL1) / (0.75 + 0.25)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_label_smoothing():
    loss = ImbalanceLoss("ce", label_smoothing=0.1)(LOGITS, LABELS)
    # soft targets (0.95, 0.05) and (0.05, 0.95); -log of the other class is NLL + the logit gap
    row0 = 0.95 * NLL0 + 0.05 * (NLL0 + 2)
    row1 = 0.95 * NLL1 + 0.05 * (NLL1 + 1)
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(0.2950951, abs=1e-6)
    assert loss.item() == pytest.approx(F.cross_entropy(LOGITS, LABELS, label_smoothing=0.1).item(), abs=1e-6)


def test_focal_with_label_smoothing_modulates_each_class_term():
    loss = ImbalanceLoss("focal", gamma=1.0, label_smoothing=0.2)(LOGITS, LABELS)
    row0 = 0.9 * (1 - P0) * NLL0 + 0.1 * P0 * (NLL0 + 2)
    row1 = 0.9 * (1 - P1) * NLL1 + 0.1 * P1 * (NLL1 + 1)
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)


def test_loss_gradient_flows_and_weights_follow_the_device():
    logits = LOGITS.clone().requires_grad_(True)
    ImbalanceLoss("focal", weights=[1.0, 2.0])(logits, LABELS).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


COUNTS, NAMES = [90, 10], ["ham", "spam"]


def test_inverse_weights_are_sklearn_balanced():
    w = class_weights("inverse", COUNTS, NAMES)
    assert w.tolist() == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])  # 0.5556, 5.0


def test_sqrt_inverse_weights():
    w = class_weights("sqrt_inverse", COUNTS, NAMES)
    assert w.tolist() == pytest.approx([5 / 6, 2.5])  # ratio sqrt(9) = 3, average example weight 1
    assert float(np.dot(w, COUNTS)) == pytest.approx(100)


def test_effective_number_weights():
    w = class_weights("effective_number", COUNTS, NAMES, beta=0.9)
    raw = [(1 - 0.9) / (1 - 0.9 ** 90), (1 - 0.9) / (1 - 0.9 ** 10)]
    scale = 100 / (raw[0] * 90 + raw[1] * 10)
    assert w.tolist() == pytest.approx([raw[0] * scale, raw[1] * scale])
    assert w.tolist() == pytest.approx([0.949197, 1.457229], abs=1e-6)
    # beta -> 0: every class counts as one effective sample: no re-weighting
    assert class_weights("effective_number", COUNTS, NAMES, beta=1e-9).tolist() == pytest.approx([1.0, 1.0])


def test_explicit_weights_by_label():
    w = class_weights({"spam": 4.0}, COUNTS, NAMES)
    assert w[1] / w[0] == pytest.approx(4.0)
    with pytest.raises(RecipeError, match="unknown label 'eggs'"):
        class_weights({"eggs": 2.0}, COUNTS, NAMES)


def test_a_class_without_examples_cannot_be_weighted():
    with pytest.raises(RecipeError, match="'spam' has no training examples"):
        class_weights("inverse", [10, 0], NAMES)
