"""Search spaces as data: spaces and their files (`searchspace`), the layout of their networks (`layout`),
architectures (`architecture`), the block op plans (`blocks`), canonical forms, the zoo, limits and the
analytic FLOPs/params count (`flops`).

``spos.space`` was one module before the subpackages (#31); its names are all here still.
"""

from spos.space import flops  # noqa: F401  (registers the supernet-size check every new space runs)
from spos.space.architecture import *  # noqa: F401,F403
from spos.space.architecture import __all__ as _architecture
from spos.space.layout import *  # noqa: F401,F403
from spos.space.layout import __all__ as _layout
from spos.space.searchspace import *  # noqa: F401,F403
from spos.space.searchspace import __all__ as _searchspace

__all__ = [*_searchspace, *_layout, *_architecture]
