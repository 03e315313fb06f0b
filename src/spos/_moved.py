"""Module paths of the layout before the subpackages (#31), so code written against them keeps working.

``import spos.supernet`` (say) gives the module now at ``spos.nn.supernet``, the same module object, with a
DeprecationWarning that names the new path. `spos/__init__.py` installs the finder; nothing else uses it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module path -> where it lives now
MOVED = {
    'spos.blocks': 'spos.space.blocks',
    'spos.canonical': 'spos.space.canonical',
    'spos.checkpoint': 'spos.store.checkpoint',
    'spos.configs': 'spos.train.configs',
    'spos.dali': 'spos.data.dali',
    'spos.dynamic': 'spos.nn.dynamic',
    'spos.environment': 'spos.cli.environment',
    'spos.export': 'spos.deploy.export',
    'spos.fewshot': 'spos.nn.fewshot',
    'spos.filekinds': 'spos.store.filekinds',
    'spos.files': 'spos.io.files',
    'spos.fixed': 'spos.nn.fixed',
    'spos.flops': 'spos.space.flops',
    'spos.fuse': 'spos.deploy.fuse',
    'spos.hub': 'spos.store.hub',
    'spos.latency': 'spos.deploy.latency',
    'spos.limits': 'spos.space.limits',
    'spos.model_card': 'spos.store.model_card',
    'spos.official': 'spos.store.official',
    'spos.preprocessing': 'spos.data.preprocessing',
    'spos.pretrained': 'spos.store.pretrained',
    'spos.quantize': 'spos.deploy.quantize',
    'spos.rank_statistics': 'spos.stats.ranking',
    'spos.rank_window_statistics': 'spos.stats.windows',
    'spos.schema': 'spos.io.schema',
    'spos.search.rank_job': 'spos.rank.job',
    'spos.search.tabular': 'spos.bench.engine',
    'spos.supernet': 'spos.nn.supernet',
    'spos.timm': 'spos.deploy.timm',
    'spos.train.bn': 'spos.nn.calibration',
    'spos.zoo': 'spos.space.zoo',
    'spos.zoo_table': 'spos.space.zoo_table',
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new}: import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module) -> None:
        """The module ran already under its new name: nothing to do."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        new = MOVED.get(name)
        return importlib.util.spec_from_loader(name, _Alias(new)) if new else None


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
