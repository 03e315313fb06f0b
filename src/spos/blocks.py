"""Static building blocks: the ShuffleNetV2 / Xception choice block, squeeze-excitation, activations.

Module layout and names follow the official ShuffleNet-Series code (``branch_main.N``,
``branch_proj.N``), so official checkpoints map onto these modules key for key. The sliced
twins used by the supernet live in `spos.dynamic` and share this layout.
"""

from __future__ import annotations

import torch
from torch import nn

from spos.space import BLOCK_KERNELS, XCEPTION, LayerSpec


def make_activation(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU(inplace=True)


def se_mid_channels(channels: int) -> int:
    """Squeeze width: a quarter of the channels rounded up to a multiple of 8 (as in the seed)."""
    return -(-(channels // 4) // 8) * 8


class SqueezeExcite(nn.Module):
    """SE with a ReLU squeeze and a hard-sigmoid gate (MobileNetV3 / OneShot+ style)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_mid_channels(channels)
        self.squeeze = nn.Conv2d(channels, mid, 1, bias=True)
        self.excite = nn.Conv2d(mid, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = nn.functional.hardsigmoid(self.excite(nn.functional.relu(self.squeeze(gate))))
        return x * gate


def split_channels(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official channel shuffle + split: even channels pass through, odd ones go to the main branch."""
    return x[:, 0::2], x[:, 1::2]


def main_branch_plan(spec: LayerSpec, block: int, mid: int) -> list[tuple]:
    """The main branch as a list of ops: ("conv", in, out, kernel, stride, groups, out_is_mid) /
    ("bn", C) / ("act",) / ("se", C). ``out_is_mid`` marks the convs whose output width is the
    channel choice, which the supernet slices.

    One description serves the static block, the sliced supernet block and the FLOPs table,
    so the three cannot drift apart.
    """
    i, o, s = spec.main_in, spec.main_out, spec.stride
    if block == XCEPTION:
        plan = [("conv", i, i, 3, s, i, False), ("bn", i),
                ("conv", i, mid, 1, 1, 1, True), ("bn", mid), ("act",),
                ("conv", mid, mid, 3, 1, mid, True), ("bn", mid),
                ("conv", mid, mid, 1, 1, 1, True), ("bn", mid), ("act",),
                ("conv", mid, mid, 3, 1, mid, True), ("bn", mid),
                ("conv", mid, o, 1, 1, 1, False), ("bn", o), ("act",)]
    else:
        k = BLOCK_KERNELS[block]
        plan = [("conv", i, mid, 1, 1, 1, True), ("bn", mid), ("act",),
                ("conv", mid, mid, k, s, mid, True), ("bn", mid),
                ("conv", mid, o, 1, 1, 1, False), ("bn", o), ("act",)]
    if spec.se:
        plan.append(("se", o))
    return plan


def proj_branch_plan(spec: LayerSpec, block: int) -> list[tuple]:
    """The projection branch of a stage's first layer (depthwise k x k then pointwise)."""
    if not spec.first:
        return []
    p, k = spec.main_in, BLOCK_KERNELS[block]
    return [("conv", p, p, k, spec.stride, p, False), ("bn", p), ("conv", p, p, 1, 1, 1, False), ("bn", p), ("act",)]


def build_static(plan: list[tuple], activation: str, affine: bool = True) -> nn.Sequential:
    layers = []
    for op in plan:
        if op[0] == "conv":
            _, cin, cout, k, s, g, _ = op
            layers.append(nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False))
        elif op[0] == "bn":
            layers.append(nn.BatchNorm2d(op[1], affine=affine))
        elif op[0] == "act":
            layers.append(make_activation(activation))
        else:
            layers.append(SqueezeExcite(op[1]))
    return nn.Sequential(*layers)


class ShuffleNetBlock(nn.Module):
    """One choice layer with a fixed block and width: ShuffleNetV2 3x3/5x5/7x7 or Xception-like.

    A stage's first layer feeds its whole input to both a projection branch and the main
    branch; the others split the input and transform one half. Output channels are always
    ``spec.out_channels``; the channel choice only sets the main branch's mid width.
    """

    def __init__(self, spec: LayerSpec, block: int, mid: int, affine: bool = True) -> None:
        super().__init__()
        self.first = spec.first
        self.branch_main = build_static(main_branch_plan(spec, block, mid), spec.activation, affine)
        self.branch_proj = build_static(proj_branch_plan(spec, block), spec.activation, affine) if spec.first else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch_proj is not None:
            return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
        x_proj, x_main = split_channels(x)
        return torch.cat((x_proj, self.branch_main(x_main)), 1)


def init_weights(model: nn.Module) -> None:
    """The official initialisation: N(0, 1/fan_in_per_group) convs, N(0, 0.01) stem and linear, BN bias 1e-4."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            std = 0.01 if name.startswith("first_conv") or ".squeeze" in name or ".excite" in name \
                else 1.0 / module.weight.shape[1]
            nn.init.normal_(module.weight, 0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.constant_(module.bias, 1e-4)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
