"""Sliced twins of the static modules in `spos.space.blocks`, for the weight-sharing supernet.

One set of weights per candidate op is allocated at the widest width choice. A sampled width
takes the leading slice of every weight it touches (the convolutions, the BN statistics, SE),
so a path costs what its subnet costs, and channels past the slice cannot reach the output.
Every module of a sliced branch is called as ``layer(x, mid)``; only the convs marked
``sliced`` in the op plan use ``mid``, the rest follow their input's width.

`inherit` copies a supernet path's weights into the static modules built from the same plan,
pairing modules in the order the plan built them (not by name), so a mismatch fails loudly.
"""

from __future__ import annotations

from itertools import zip_longest

import torch
from torch import nn
from torch.nn import functional as F

from spos.nn.ops import SqueezeExcite, make_activation, split_channels
from spos.space.blocks import Op, make_block, op_plan, residual, se_mid_channels


class DynamicConv2d(nn.Conv2d):
    """A conv whose input width follows the input and whose output width may be sliced to ``mid``."""

    def __init__(self, op: Op) -> None:
        super().__init__(op.in_channels, op.out_channels, op.kernel, op.stride, op.kernel // 2,
                         groups=op.groups, bias=False)
        self.depthwise = op.groups > 1
        self.sliced_output = op.sliced

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:  # type: ignore[override]
        cin = x.shape[1]
        kernel = self.kernel()
        if self.depthwise:
            weight, groups = kernel[:cin], cin
        else:
            cout = mid if self.sliced_output else self.out_channels
            weight, groups = kernel[:cout, :cin], 1
        return F.conv2d(x, weight, None, self.stride, self.padding, 1, groups)

    def kernel(self) -> torch.Tensor:
        """The weight, or the centre of a larger kernel shared with a wider choice (Once-for-All's
        elastic kernel: a 3x3 choice uses the middle of the 7x7 one)."""
        size, full = self.kernel_size[0], self.weight.shape[-1]
        if full == size:
            return self.weight
        start = (full - size) // 2
        return self.weight[:, :, start:start + size, start:start + size]


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """Non-affine BN (as in the official supernet) over the leading ``C`` channels of its statistics.

    Running statistics of a slice are updated in place, so recalibration and training keep
    working per path. ``momentum=None`` gives cumulative averaging, as nn.BatchNorm2d does.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=False)

    def forward(self, x: torch.Tensor, mid: int | None = None) -> torch.Tensor:  # type: ignore[override]
        c = x.shape[1]
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            None, None, use_batch_stats, factor, self.eps,
        )


class DynamicSqueezeExcite(SqueezeExcite):
    """SE over the input's width: the leading rows and columns of the widest SE's convs."""

    def forward(self, x: torch.Tensor, mid: int | None = None) -> torch.Tensor:  # type: ignore[override]
        c = x.shape[1]
        m = se_mid_channels(c)
        gate = F.conv2d(x.mean((2, 3), keepdim=True), self.squeeze.weight[:m, :c], self.squeeze.bias[:m])
        gate = F.conv2d(F.relu(gate), self.excite.weight[:c, :m], self.excite.bias[:c])
        return x * F.hardsigmoid(gate)


class DynamicActivation(nn.Module):
    """The stage's activation, called like the other sliced modules."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.act = make_activation(name)

    def forward(self, x: torch.Tensor, mid: int | None = None) -> torch.Tensor:
        return self.act(x)


def build_dynamic(plan: list[Op], activation: str) -> nn.ModuleList:
    layers = nn.ModuleList()
    for op in plan:
        if op.kind == "conv":
            layers.append(DynamicConv2d(op))
        elif op.kind == "bn":
            layers.append(DynamicBatchNorm2d(op.out_channels))
        elif op.kind == "act":
            layers.append(DynamicActivation(activation))
        else:
            layers.append(DynamicSqueezeExcite(op.out_channels))
    return layers


def run_sliced(layers: nn.ModuleList, x: torch.Tensor, mid: int) -> torch.Tensor:
    for layer in layers:
        x = layer(x, mid)
    return x


class DynamicBlock(nn.Module):
    """`blocks.static_block` at the widest mid width of its op, run at any narrower one."""

    def __init__(self, spec, op_name: str, max_mid: int) -> None:
        super().__init__()
        self.spec, self.block = spec, make_block(op_name)
        self.max_mid = max_mid
        for name, plan in op_plan(spec, op_name, max_mid).items():
            self.add_module(name, build_dynamic(plan, spec.activation))

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:
        """The block's rule (`spos.space.blocks.RULES`), as the static units run it, on sliced branches."""
        rule = self.block.rule
        if rule == "shuffle":
            if self.spec.first:
                return torch.cat((run_sliced(self.branch_proj, x, mid), run_sliced(self.branch_main, x, mid)), 1)
            x_proj, x_main = split_channels(x)
            return torch.cat((x_proj, run_sliced(self.branch_main, x_main, mid)), 1)
        if rule == "skip":
            return run_sliced(self.proj, x, mid) if hasattr(self, "proj") else x
        y = run_sliced(self.layers, x, mid)
        return y + x if residual(self.spec) else y

    def entangle(self, source: DynamicBlock, convs: dict[str, tuple[int | None, ...]] | None = None
                 ) -> list[DynamicConv2d]:
        """Use ``source``'s conv weights (an op with a kernel and a mid width at least as large):
        every conv takes the leading channels and the centre of its kernel. By default the layouts
        are the same and convs pair in order; ``convs`` pairs them by branch for another layout (a
        block's ``align_convs``). Returns the convs left with weights of their own."""
        own = []
        for name, branch in self.named_children():
            mine = [m for m in branch if isinstance(m, DynamicConv2d)]
            theirs = [m for m in getattr(source, name) if isinstance(m, DynamicConv2d)]
            picks = range(len(mine)) if convs is None else convs[name]
            if len(picks) != len(mine):
                raise ValueError(f"{self.block.name}: {len(picks)} conv pairings for {len(mine)} convs in {name}")
            for conv, pick in zip(mine, picks):
                if pick is None:
                    own.append(conv)
                else:
                    conv.weight = theirs[pick].weight
        return own


# ----------------------------------------------------------------------------------------------
# Weight inheritance


def centre_slice(source: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``source`` cut to ``shape``: leading channels, centred kernel (the slice a path runs with)."""
    index = [slice(0, n) for n in shape]
    for dim in range(2, len(shape)):
        start = (source.shape[dim] - shape[dim]) // 2
        index[dim] = slice(start, start + shape[dim])
    return source[tuple(index)]


def _stateful(module: nn.Module) -> list[nn.Module]:
    """The modules holding weights or statistics, in the order they were built."""
    return [m for m in module.modules()
            if next(m.parameters(recurse=False), None) is not None or next(m.buffers(recurse=False), None) is not None]


def _copy(target: torch.Tensor, source: torch.Tensor, where: str) -> None:
    if len(target.shape) != len(source.shape) or any(t > s for t, s in zip(target.shape, source.shape)):
        raise RuntimeError(f"weight inheritance: {where} needs {tuple(target.shape)} but the source holds "
                           f"{tuple(source.shape)}")
    target.copy_(centre_slice(source, target.shape))


def _inherit_module(target: nn.Module, source: nn.Module) -> None:
    where = f"{type(target).__name__} <- {type(source).__name__}"
    if isinstance(target, nn.BatchNorm2d) and isinstance(source, nn.BatchNorm2d):
        _copy(target.running_mean, source.running_mean, where)
        _copy(target.running_var, source.running_var, where)
        target.num_batches_tracked.copy_(source.num_batches_tracked)
        if target.affine and source.affine:
            _copy(target.weight, source.weight, where)
            _copy(target.bias, source.bias, where)
        elif target.affine:
            # The one expected gap: the supernet's BN is non-affine (as in the official supernet),
            # so the static twin's scale and shift start at the identity, 1 and 0.
            target.weight.fill_(1.0)
            target.bias.fill_(0.0)
        return
    if any(isinstance(target, kind) and isinstance(source, kind) for kind in (nn.Conv2d, nn.Linear)):
        weight = source.kernel() if isinstance(source, DynamicConv2d) else source.weight
        _copy(target.weight, weight, where)
        if (target.bias is None) != (source.bias is None):
            raise RuntimeError(f"weight inheritance: {where}: one has a bias, the other not")
        if target.bias is not None:
            _copy(target.bias, source.bias, where)
        return
    raise RuntimeError(f"weight inheritance: cannot copy {where}; the two were not built from one plan")


@torch.no_grad()
def inherit(target: nn.Module, source: nn.Module) -> nn.Module:
    """Copy ``source``'s weights (possibly wider, larger kernels) into ``target``, module by module."""
    for mine, theirs in zip_longest(_stateful(target), _stateful(source)):
        if mine is None or theirs is None:
            raise RuntimeError(f"weight inheritance: {type(target).__name__} and {type(source).__name__} hold "
                               "different numbers of weighted modules")
        _inherit_module(mine, theirs)
    return target
