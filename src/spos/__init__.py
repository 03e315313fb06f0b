"""spos: Single Path One-Shot neural architecture search in PyTorch."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``spos.from_pretrained``, imported on first use so that ``import spos`` stays light."""
    if name == "from_pretrained":
        from spos.pretrained import from_pretrained

        return from_pretrained
    raise AttributeError(f"module 'spos' has no attribute {name!r}")
