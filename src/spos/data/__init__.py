"""Datasets, splits, input conventions, transforms and loaders; DALI; preprocessing records.

``spos.data`` was one module before the subpackages (#31); its names are all here still.
"""

from spos.data.datasets import *  # noqa: F401,F403
from spos.data.datasets import __all__  # noqa: F401
