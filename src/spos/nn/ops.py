"""Static modules built from a block's op plan (`spos.space.blocks`): the convolutions, BN, activations and SE of one op, and the rule that combines its branches."""

from __future__ import annotations

import torch
from torch import nn

from spos.space.blocks import Op, make_block, op_plan, residual, se_mid_channels


def split_channels(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official channel shuffle + split: even channels pass through, odd ones go to the main branch."""
    return x[:, 0::2], x[:, 1::2]



def make_activation(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU(inplace=True)



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



def build_static(plan: list[Op], activation: str, affine: bool = True) -> nn.Sequential:
    layers = []
    for op in plan:
        if op.kind == "conv":
            layers.append(nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride, op.kernel // 2,
                                    groups=op.groups, bias=False))
        elif op.kind == "bn":
            layers.append(nn.BatchNorm2d(op.out_channels, affine=affine))
        elif op.kind == "act":
            layers.append(make_activation(activation))
        else:
            layers.append(SqueezeExcite(op.out_channels))
    return nn.Sequential(*layers)



class _StaticBranches(nn.Module):
    """The branches of one op's plan as ``nn.Sequential`` children named as in the plan."""

    def __init__(self, spec, op_name: str, mid: int, affine: bool, optional: tuple[str, ...] = ()) -> None:
        super().__init__()
        plan = op_plan(spec, op_name, mid)
        for name, branch in plan.items():
            self.add_module(name, build_static(branch, spec.activation, affine))
        for name in set(optional) - set(plan):
            setattr(self, name, None)  # TorchScript-able "this layer has no such branch"



class SequentialUnit(_StaticBranches):
    def __init__(self, spec, op_name: str, mid: int, affine: bool = True) -> None:
        super().__init__(spec, op_name, mid, affine)
        self.residual = residual(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return y + x if self.residual else y



class ShuffleUnit(_StaticBranches):
    def __init__(self, spec, op_name: str, mid: int, affine: bool = True) -> None:
        super().__init__(spec, op_name, mid, affine, optional=("branch_proj",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch_proj is not None:
            return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
        x_proj, x_main = split_channels(x)
        return torch.cat((x_proj, self.branch_main(x_main)), 1)



class SkipUnit(_StaticBranches):
    def __init__(self, spec, op_name: str, mid: int, affine: bool = True) -> None:
        super().__init__(spec, op_name, mid, affine, optional=("proj",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        return x



_STATIC_UNITS = {"sequential": SequentialUnit, "shuffle": ShuffleUnit, "skip": SkipUnit}



def static_block(spec, op_name: str, mid: int, affine: bool = True) -> nn.Module:
    """One choice layer with a fixed op and width, as plain static modules (one per branch)."""
    return _STATIC_UNITS[make_block(op_name).rule](spec, op_name, mid, affine)



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
