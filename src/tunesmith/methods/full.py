"""full: every parameter is trained (the default)."""

from tunesmith.methods.base import Method

METHOD = Method()
