"""spos networks as timm models, and as multi-scale backbones: ``import spos.deploy.timm`` registers them.

- ``timm.create_model("spos_oneshot")``: every zoo architecture as ``spos_<name>`` (``+`` spelled
  ``_plus``, ``-`` spelled ``_``: ``spos_oneshot_plus``, ``spos_all_3x3``);
- ``timm.create_model("spos", arch="runs/search/best.json")``: any architecture a search wrote (or a
  zoo name, or ``B,..,B/C,..,C`` text; ``space=`` a preset, file or space dict);
- ``timm.create_model("local-dir:FOLDER", pretrained=True)`` / ``"hf-hub:USER/NAME"``: a model folder
  of `spos.store.pretrained` (its config.json is also a timm config), with its weights.

``pretrained_cfg`` carries the input convention (``mean``/``std`` in timm's 0..1 terms, the
interpolation and crop), so ``timm.data.resolve_data_config`` builds the right transforms.
``features_only=True`` returns the stem and the outputs of every stage, as timm backbones do for
detection and segmentation: ``out_indices=(1, 2, 3, 4)`` are the stages, at strides 4/8/16/32 for a
224 ImageNet space; ``feature_info`` gives their channels and reductions.
"""

from __future__ import annotations

import torch
from timm.models import build_model_with_cfg, register_model

from spos.data.conventions import IMAGENET_MEAN, IMAGENET_STD
from spos.nn.fixed import FixedNet
from spos.space.searchspace import SearchSpace, load_space
from spos.space.zoo import ZOO, resolve_architecture

DEFAULT_INPUT = {"name": "spos", "channel_order": "rgb", "scale": 1.0, "mean": list(IMAGENET_MEAN),
                 "std": list(IMAGENET_STD), "resize": {"rule": "resize-centre-crop", "resize": 256, "crop": 224}}


def feature_info(space: SearchSpace, stem: str = "first_conv.2") -> list[dict]:
    """The stem (``stem``: its last module) and every stage's last layer: output channels, total stride
    (reduction) and module name, as timm's FeatureListNet finds them (first-level Sequentials flattened)."""
    layout = space.layout
    info = [dict(num_chs=layout.stem.out_channels, reduction=layout.stem.stride, module=stem)]
    reduction = layout.stem.stride
    for spec, after in zip(layout.layers, layout.layers[1:] + (None,)):
        reduction *= spec.stride
        if after is None or after.first:
            info.append(dict(num_chs=spec.out_channels, reduction=reduction, module=f"features.{spec.index}"))
    return info


class TimmSposNet(FixedNet):
    """A FixedNet with what timm expects of a model (the same weights and state-dict keys). timm's generic
    keyword arguments that a spos network has no use for (``drop_rate``, ``global_pool``...) are ignored."""

    def __init__(self, space: SearchSpace, arch, **_) -> None:
        super().__init__(space, arch)
        self.num_classes, self.num_features = space.num_classes, space.layout.head.width
        self.feature_info = feature_info(space, stem=f"first_conv.{len(self.first_conv) - 1}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.first_conv(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            head = self.head
            x = head.conv_last(x.mean((2, 3), keepdim=True)) if head.pool_first else head.conv_last(x).mean(
                (2, 3), keepdim=True)
            return torch.flatten(x, 1)
        return self.head(x)

    def get_classifier(self) -> torch.nn.Module:
        return self.head.classifier[0]


def timm_pretrained_cfg(space: SearchSpace, record: dict | None = None) -> dict:
    """timm's pretrained_cfg for a network of ``space`` fed as the preprocessing ``record`` says (default:
    ImageNet's). spos feeds ``(x * scale - mean) / std`` for pixels x in 0..1; timm ``(x - mean') / std'``,
    so ``mean' = mean / scale`` and ``std' = std / scale``; BGR and padding go in ``notes``."""
    record = record or DEFAULT_INPUT
    scale, channels = float(record.get("scale", 1.0)), space.in_channels
    mean = record.get("mean") or [0.5] * channels
    std = record.get("std") or [0.5] * channels
    rule = record.get("resize") or {"rule": "none"}
    crop_pct = rule["crop"] / rule["resize"] if rule["rule"] == "resize-centre-crop" else 1.0
    notes = []
    if record.get("channel_order") == "bgr":
        notes.append("feed BGR channel order (official SPOS convention)")
    if rule["rule"] == "pad":
        notes.append(f"pad raw images by {rule['pad']} pixels of value {rule['value']} on each side first")
    return dict(architecture="spos", input_size=(channels, space.input_size, space.input_size),
                interpolation="bilinear", crop_pct=crop_pct, crop_mode="center",
                mean=tuple(m / scale for m in mean), std=tuple(s / scale for s in std), num_classes=space.num_classes,
                first_conv="first_conv.0", classifier="head.classifier.0", pool_size=None,
                license="apache-2.0", paper_ids="arXiv:1904.00420", notes=tuple(notes))


def _build(variant: str, arch, pretrained: bool, space=None, *, pretrained_cfg=None, pretrained_cfg_overlay=None,
           cache_dir=None, num_classes: int | None = None, in_chans: int | None = None, input_size=None,
           width_mult: float = 1.0, **kwargs):
    adapt = {key: value for key, value in (("num_classes", num_classes), ("in_channels", in_chans),
                                           ("input_size", input_size)) if value is not None}
    base = None
    if space is not None:
        base = SearchSpace.from_dict(space) if isinstance(space, dict) else load_space(space)
        base = base.adapt(width_mult=width_mult, **adapt)
    arch_ref = arch if isinstance(arch, str) else None
    if isinstance(arch, dict):
        from spos.space.architecture import Architecture

        arch, net_space = Architecture.from_dict(arch).validate(base), base
    else:
        arch, net_space = resolve_architecture(arch_ref, space=base, width_mult=width_mult, **adapt)
    cfg = pretrained_cfg if isinstance(pretrained_cfg, dict) else timm_pretrained_cfg(net_space)
    return build_model_with_cfg(TimmSposNet, variant, pretrained, pretrained_cfg=cfg,
                                pretrained_cfg_overlay=pretrained_cfg_overlay, cache_dir=cache_dir,
                                feature_cfg=dict(flatten_sequential=True), space=net_space, arch=arch, **kwargs)


def timm_name(zoo_name: str) -> str:
    return "spos_" + zoo_name.replace("+", "_plus").replace("-", "_")


@register_model
def spos(pretrained: bool = False, arch: str | dict = "oneshot", **kwargs):
    """Any spos architecture: ``arch`` is a zoo name, an architecture file, ``B,..,B/C,..,C`` text or an
    architecture dict; ``space`` a preset name, space file or space dict (default: the architecture's)."""
    return _build("spos", arch, pretrained, **kwargs)


def _register_zoo() -> None:
    for name in ZOO:
        def entry(pretrained: bool = False, _name: str = name, **kwargs):
            return _build(timm_name(_name), _name, pretrained, **kwargs)

        entry.__name__ = entry.__qualname__ = timm_name(name)
        entry.__doc__ = f"spos zoo architecture {name!r}: {ZOO[name].description} (fresh weights)."
        entry.__module__ = __name__
        register_model(entry)


_register_zoo()
