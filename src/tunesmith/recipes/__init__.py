"""Recipes: the only layer that combines features: finetune (setup -> train -> finish), plan, predict, generate, export, inspect."""
