"""freeze: train the upper part of the model only.

    freeze: embeddings      the embeddings are frozen, every transformer layer and the head train
    freeze: layers          the embeddings and the first `layers` transformer layers are frozen
    freeze: all_but_head    only the task head trains (a linear probe on frozen features)
"""

from __future__ import annotations

from tunesmith.errors import RecipeError
from tunesmith.methods.base import Method, embedding_parameters, freeze_all, head_parameters, transformer_layers


class Freeze(Method):
    name = "freeze"

    def apply(self, model, spec):
        for param in model.parameters():
            param.requires_grad_(True)
        if spec.freeze == "all_but_head":
            freeze_all(model)
            heads = list(head_parameters(model))
            if not heads:
                raise RecipeError(f"method freeze: all_but_head: {type(model).__name__} has no task head to train")
            for param in heads:
                param.requires_grad_(True)
            return model
        frozen = list(embedding_parameters(model))
        if spec.freeze == "layers":
            layers = transformer_layers(model)
            if spec.layers >= len(layers):
                raise RecipeError(f"method.layers: {spec.layers} freezes every layer of this {len(layers)}-layer "
                                  f"model; use freeze: all_but_head to train only the head")
            frozen += [p for layer in layers[: spec.layers] for p in layer.parameters()]
        for param in frozen:
            param.requires_grad_(False)
        return model


METHOD = Freeze()
