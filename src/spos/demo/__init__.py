"""`spos demo`: the whole pipeline on small data (`pipeline`), with its report (`report`).

``spos.demo`` was one module before the subpackages (#31); its names are all here still.
"""

from spos.demo.pipeline import *  # noqa: F401,F403
from spos.demo.pipeline import __all__ as _pipeline
from spos.demo.report import *  # noqa: F401,F403
from spos.demo.report import __all__ as _report

__all__ = [*_pipeline, *_report]
