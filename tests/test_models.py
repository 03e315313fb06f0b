"""Properties of the supernet and fixed networks over many random architectures."""

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from spos.nn.fixed import FixedNet
from spos.nn.supernet import SuperNet
from spos.space.architecture import Architecture, sample_architecture
from spos.space.flops import cost_table, count, readable
from spos.space.searchspace import get_space, space_from_spec

SPACES = {
    "oneshot-224": dict(name="oneshot"),
    "oneshot+-224": dict(name="oneshot+"),
    "oneshot-32": dict(name="oneshot", input_size=32, num_classes=10, width_mult=0.5),
    "oneshot+-32": dict(name="oneshot+", input_size=32, num_classes=10, width_mult=0.5),
    "oneshot-8-gray": dict(name="oneshot", input_size=8, num_classes=10, in_channels=1, width_mult=0.25),
    "shufflenetv2+-224": dict(name="shufflenetv2+"),
    "mbv2-macro-cifar-32": dict(name="mbv2-macro-cifar"),
    "mbv2-macro-cifar-8-gray": dict(name="mbv2-macro-cifar", input_size=8, in_channels=1, width_mult=0.5),
    "proxyless-mobile-224": dict(name="proxyless-mobile"),
    "proxyless-mobile-224-narrow": dict(name="proxyless-mobile", width_mult=0.5),
    "mbconv-se-widths": "mbconv-se-widths",
}

# An MBConv space with SE, hard-swish and two width choices: the sliced SE and expanded widths.
MBCONV_SE_SPEC = dict(
    name="mbconv-se-widths", input_size=16, num_classes=10, stem=dict(width=8, stride=1, activation="hswish"),
    stages=[dict(layers=2, width=16, stride=2, ops=["identity", "mbconv-e3-k3", "mbconv-e6-k5"]),
            dict(layers=2, width=24, stride=2, se=True, activation="hswish", ops=["mbconv-e4-k3", "identity"],
                 first_ops=["mbconv-e4-k3", "mbconv-e2-k7"])],
    widths=[0.5, 0.75, 1.0], head=dict(kind="pool-conv", width=64, activation="hswish", dropout=0.0))


def _space(key):
    if SPACES[key] == "mbconv-se-widths":
        return space_from_spec(MBCONV_SE_SPEC)
    return get_space(**SPACES[key])


def _archs(space, n, seed=0):
    rng = random.Random(seed)
    return [sample_architecture(space, rng) for _ in range(n)]


def _trained_like(supernet, space, steps=3):
    """Give the supernet non-trivial BN statistics and a classifier with visible outputs."""
    torch.nn.init.normal_(supernet.head.classifier[0].weight, 0, 1.0)
    last = supernet.head.conv_last[0].weight
    torch.nn.init.normal_(last, 0, last.shape[1] ** -0.5)
    supernet.train()
    x = torch.randn(4, space.in_channels, space.input_size, space.input_size)
    with torch.no_grad():
        for arch in _archs(space, steps, seed=99):
            supernet(x, arch)
    return supernet.eval()


def _recalibrate(supernet, arch, x):
    """Real BN statistics for this path, so activations keep their scale through 20 layers."""
    for module in supernet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    supernet.train()
    with torch.no_grad():
        supernet(x, arch)
    supernet.eval()


@pytest.mark.parametrize("key,n,entangled", [
    ("oneshot-224", 4, False), ("oneshot+-224", 3, False), pytest.param("oneshot-32", 12, False, marks=pytest.mark.slow),
    pytest.param("oneshot+-32", 12, False, marks=pytest.mark.slow),
    pytest.param("oneshot-8-gray", 12, False, marks=pytest.mark.slow), ("oneshot-32", 6, True), ("mbv2-macro-cifar-32", 8, False),
    ("mbv2-macro-cifar-32", 8, True), ("mbv2-macro-cifar-8-gray", 8, False), ("proxyless-mobile-224-narrow", 2, True),
    ("mbconv-se-widths", 10, False), ("mbconv-se-widths", 10, True)])
def test_extract_equals_supernet_path(key, n, entangled):
    space = _space(key)
    supernet = _trained_like(SuperNet(space, entangled_kernels=entangled), space)
    x = torch.randn(2, space.in_channels, space.input_size, space.input_size)
    for arch in _archs(space, n):
        _recalibrate(supernet, arch, x)
        fixed = supernet.extract(arch, [(x, None)]).eval()  # the BN statistics _recalibrate gave the path
        with torch.no_grad():
            expected, got = supernet(x, arch), fixed(x)
        assert expected.shape == (2, space.num_classes)
        assert expected.abs().max() > 1e-2  # the comparison is not between two near-zero tensors
        assert (expected - got).abs().max().item() <= 1e-5


@pytest.mark.parametrize("key,n", [("oneshot-224", 6), ("oneshot+-224", 6),
                                   pytest.param("oneshot-32", 25, marks=pytest.mark.slow),
                                   pytest.param("oneshot+-32", 25, marks=pytest.mark.slow),
                                   pytest.param("oneshot-8-gray", 25, marks=pytest.mark.slow), ("shufflenetv2+-224", 4),
                                   ("mbv2-macro-cifar-32", 25), ("mbv2-macro-cifar-8-gray", 25),
                                   ("proxyless-mobile-224", 4), ("mbconv-se-widths", 25)])
def test_flops_and_params_equal_torch_counts(key, n):
    space = _space(key)
    x = torch.randn(1, space.in_channels, space.input_size, space.input_size)
    archs = _archs(space, n, seed=1) + list(cost_table(space).extremes())
    for arch in archs:
        net = FixedNet(space, arch)
        with FlopCounterMode(display=False) as counter:
            net(x)
        cost = count(space, arch)
        assert counter.get_total_flops() // 2 == cost.macs, str(arch)
        assert sum(p.numel() for p in net.parameters()) == cost.params, str(arch)


def test_batch_costs_equal_single_costs():
    space = get_space("oneshot")
    table = cost_table(space)
    archs = _archs(space, 50)
    import numpy as np

    blocks = np.array([a.blocks for a in archs])
    channels = np.array([a.channels for a in archs])
    macs, params = table.batch(blocks, channels)
    assert macs.tolist() == [table.macs(a) for a in archs]
    assert params.tolist() == [table.params(a) for a in archs]


def test_counts_read_with_three_digits_at_any_size():
    """A user's narrow space has thousands of parameters, not "0.00M"."""
    assert [readable(n) for n in (512, 3_420, 18_234, 999_999, 3_430_000, 327_900_000, 1.2e9)] == \
        ["512", "3.42k", "18.2k", "1M", "3.43M", "328M", "1.2G"]


def test_unselected_channels_cannot_leak(tiny_space):
    """Weights past the sampled slice, and other blocks' weights, do not change the output."""
    space = tiny_space
    supernet = _trained_like(SuperNet(space), space)
    arch = Architecture((3,) + (0,) * 19, (0,) * 20)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = supernet(x, arch)
        for layer, widths, block, channel in zip(supernet.features, supernet.mid_widths, arch.blocks,
                                                 arch.channels):
            for other, module in enumerate(layer):
                if other != block:
                    for p in module.parameters():
                        p.normal_()
            mid = widths[block][channel]
            for conv in layer[block].branch_main:
                if getattr(conv, "sliced_output", False):
                    conv.weight[mid:].normal_()
        after = supernet(x, arch)
    assert torch.equal(before, after)


def test_training_step_touches_only_the_path(tiny_space):
    space = tiny_space
    supernet = SuperNet(space).train()
    arch = sample_architecture(space, random.Random(5))
    out = supernet(torch.randn(4, 3, 32, 32), arch)
    out.logsumexp(1).mean().backward()
    path = {id(p) for p in supernet.path_parameters(arch)}
    for name, p in supernet.named_parameters():
        if id(p) in path:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name


def test_supernet_parameter_names_follow_official_layout(tiny_space):
    names = dict(SuperNet(tiny_space).named_parameters())
    assert "features.0.3.branch_main.0.weight" in names  # layer 0, Xception, first depthwise conv
    assert "features.0.2.branch_proj.0.weight" in names  # layer 0, 7x7, projection branch
    assert "features.19.1.branch_main.3.weight" in names
    assert names["features.0.2.branch_proj.0.weight"].shape[-1] == 7


def test_fixed_net_from_scratch_is_affine_and_trainable(tiny_space):
    net = FixedNet(tiny_space, _archs(tiny_space, 1)[0])
    assert net.first_conv[1].affine
    loss = net(torch.randn(2, 3, 32, 32)).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_supernet_rejects_invalid_architecture(tiny_space):
    from spos.errors import UserError

    with pytest.raises(UserError, match="out of range"):
        SuperNet(tiny_space)(torch.randn(1, 3, 32, 32), Architecture((4,) * 20, (0,) * 20))


def test_torchscript_export_and_compile(tiny_space):
    net = FixedNet(tiny_space, _archs(tiny_space, 1, seed=7)[0]).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        scripted = torch.jit.script(net)
        assert torch.allclose(scripted(x), expected, atol=1e-6)
        exported = torch.export.export(net, (x,))
        assert torch.allclose(exported.module()(x), expected, atol=1e-6)
        compiled = torch.compile(net, backend="aot_eager")
        assert torch.allclose(compiled(x), expected, atol=1e-5)
