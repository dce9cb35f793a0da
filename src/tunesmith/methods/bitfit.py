"""bitfit: train only the bias terms, plus the task head (Ben Zaken et al., 2022).

Models without biases (Llama) train only their head this way.
"""

from __future__ import annotations

from tunesmith.methods.base import Method, freeze_all, head_parameters


class BitFit(Method):
    name = "bitfit"

    def apply(self, model, spec):
        freeze_all(model)
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.requires_grad_(True)
        for param in head_parameters(model):
            param.requires_grad_(True)
        return model


METHOD = BitFit()
