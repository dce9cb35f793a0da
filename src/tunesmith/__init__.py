"""tunesmith: fine-tune pretrained transformers on your own data, from one YAML recipe."""

__version__ = "0.1.0"
