"""Sliced twins of the static ops in `spos.blocks`, for the weight-sharing supernet.

One set of weights per block choice is allocated at the widest channel choice. A sampled
width takes the leading slice of every weight it touches (the convolutions, the BN statistics),
so a path costs what its subnet costs, and channels past the slice cannot reach the output.
Read beside `spos.blocks`: the module layout and names are the same, which is what lets
`SuperNet.extract` copy weights by name.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from spos.blocks import SqueezeExcite, main_branch_plan, make_activation, proj_branch_plan, split_channels
from spos.space import LayerSpec


class DynamicConv2d(nn.Conv2d):
    """A conv whose input width follows the input and whose output width may be sliced.

    ``sliced_output`` marks the convs that produce the mid width; depthwise convs follow their
    input; the rest keep their full output width.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int, sliced_output: bool) -> None:
        super().__init__(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.depthwise = groups > 1
        self.sliced_output = sliced_output

    def forward(self, x: torch.Tensor, mid: int | None = None) -> torch.Tensor:  # type: ignore[override]
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


def build_dynamic(plan: list[tuple], activation: str) -> nn.ModuleList:
    layers = nn.ModuleList()
    for op in plan:
        if op[0] == "conv":
            _, cin, cout, k, s, g, out_is_mid = op
            layers.append(DynamicConv2d(cin, cout, k, s, g, sliced_output=out_is_mid))
        elif op[0] == "bn":
            layers.append(DynamicBatchNorm2d(op[1]))
        elif op[0] == "act":
            layers.append(make_activation(activation))
        else:
            layers.append(SqueezeExcite(op[1]))
    return layers


def run_sliced(layers: nn.ModuleList, x: torch.Tensor, mid: int) -> torch.Tensor:
    for layer in layers:
        x = layer(x, mid) if isinstance(layer, DynamicConv2d) else layer(x)
    return x


def centre_slice(source: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``source`` cut to ``shape``: leading channels, centred kernel (the slice a path runs with)."""
    index = [slice(0, n) for n in shape]
    for dim in range(2, len(shape)):
        start = (source.shape[dim] - shape[dim]) // 2
        index[dim] = slice(start, start + shape[dim])
    return source[tuple(index)]


def share_convs(target: nn.ModuleList, source: nn.ModuleList) -> None:
    """Make every conv of ``target`` use the weight of the conv at the same position in ``source``
    (a larger kernel is cropped at its centre by `DynamicConv2d.kernel`)."""
    for mine, theirs in zip(target, source):
        if isinstance(mine, DynamicConv2d):
            mine.weight = theirs.weight


class DynamicShuffleNetBlock(nn.Module):
    """`blocks.ShuffleNetBlock` at the widest mid width, run at any narrower one."""

    def __init__(self, spec: LayerSpec, block: int, max_mid: int) -> None:
        super().__init__()
        self.first = spec.first
        self.branch_main = build_dynamic(main_branch_plan(spec, block, max_mid), spec.activation)
        self.branch_proj = (build_dynamic(proj_branch_plan(spec, block), spec.activation)
                            if spec.first else None)

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:
        if self.branch_proj is not None:
            return torch.cat((run_sliced(self.branch_proj, x, mid), run_sliced(self.branch_main, x, mid)), 1)
        x_proj, x_main = split_channels(x)
        return torch.cat((x_proj, run_sliced(self.branch_main, x_main, mid)), 1)

    def entangle(self, source: "DynamicShuffleNetBlock") -> None:
        """Share ``source``'s conv weights (a ShuffleNet block with a larger kernel, same layout)."""
        share_convs(self.branch_main, source.branch_main)
        if self.branch_proj is not None:
            share_convs(self.branch_proj, source.branch_proj)
