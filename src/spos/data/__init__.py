"""Datasets, splits, input conventions, transforms and loaders; DALI; preprocessing records.

``spos.data`` was one module before the subpackages (#31); its names are all here still.
"""

from spos.data.conventions import *  # noqa: F401,F403
from spos.data.conventions import __all__ as _conventions
from spos.data.datasets import *  # noqa: F401,F403
from spos.data.datasets import __all__ as _datasets
from spos.data.loaders import *  # noqa: F401,F403
from spos.data.loaders import __all__ as _loaders

__all__ = [*_conventions, *_datasets, *_loaders]
