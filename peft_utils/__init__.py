"""PEFT vs full fine-tuning study toolkit: data loaders, model builders, training, results."""
__version__ = "0.2.0"
