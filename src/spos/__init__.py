"""spos: Single Path One-Shot neural architecture search in PyTorch."""

__version__ = "0.1.0"
