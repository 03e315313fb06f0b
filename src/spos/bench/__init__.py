"""Tabular benchmarks (NAS-Bench-Macro) and the search engine run against them.

``spos.bench`` was one module before the subpackages (#31); its names are all here still.
"""

from spos.bench.tables import *  # noqa: F401,F403
from spos.bench.tables import __all__  # noqa: F401
