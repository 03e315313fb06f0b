"""`spos demo`: the whole pipeline on small data, with its report.

``spos.demo`` was one module before the subpackages (#31); its names are all here still.
"""

from spos.demo.pipeline import *  # noqa: F401,F403
from spos.demo.pipeline import __all__  # noqa: F401
