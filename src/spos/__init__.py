"""spos: Single Path One-Shot neural architecture search in PyTorch.

The public API, importable from here (each name is imported on first use, so ``import spos`` stays light):
`get_space`, `load_space`, `sample_architecture`, `Architecture`, `SearchSpace` (`spos.space`); `SuperNet`,
`FixedNet` (`spos.nn`); `count`, `cost_table` (`spos.space.flops`); `calibration_batches` (`spos.nn.calibration`);
`build_datasets` (`spos.data`); `from_pretrained` (`spos.store.hub`). The subpackages follow the pipeline;
`docs/architecture.md` draws them and what each may import.
"""

import importlib

from spos import _moved

__version__ = "0.1.0"

#: public name -> the module that defines it
PUBLIC = {
    "get_space": "spos.space.searchspace", "load_space": "spos.space.searchspace",
    "SearchSpace": "spos.space.searchspace", "Architecture": "spos.space.architecture",
    "sample_architecture": "spos.space.architecture", "SuperNet": "spos.nn.supernet", "FixedNet": "spos.nn.fixed",
    "count": "spos.space.flops", "cost_table": "spos.space.flops",
    "calibration_batches": "spos.nn.calibration", "build_datasets": "spos.data.datasets",
    "from_pretrained": "spos.store.hub",
}
__all__ = ["__version__", *PUBLIC]

_moved.install()


def __getattr__(name: str):
    if name in PUBLIC:
        return getattr(importlib.import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'spos' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(PUBLIC))
