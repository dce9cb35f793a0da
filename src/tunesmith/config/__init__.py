"""Every recipe section as pure pydantic (the config layer: it imports nothing of tunesmith's but errors).

The validated `Recipe` is read, never written: what a task derives from it lives on the task.
"""

from tunesmith.config.recipe import Recipe, load_recipe, validate_recipe

__all__ = ["Recipe", "load_recipe", "validate_recipe"]
