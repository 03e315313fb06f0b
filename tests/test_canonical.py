"""Canonical architectures: twins (identities moved within a run, widths of width-free ops) are one."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from spos.nn.fixed import FixedNet
from spos.space.architecture import Architecture, sample_architecture
from spos.space.canonical import canonical, canonicalizer, distinct
from spos.space.flops import cost_table
from spos.space.searchspace import get_space, space_from_spec


def _all_archs(space):
    return [Architecture(blocks, (0,) * space.num_layers)
            for blocks in itertools.product(*(range(n) for n in space.op_counts))]


def test_nas_bench_macro_space_has_3969_networks_among_6561_keys():
    space = get_space("mbv2-macro-cifar")
    archs = _all_archs(space)
    assert len(archs) == 6561 and len(distinct(archs, space)) == 3969
    # an identity moves within a stage's stride-1 layers, not into its first (projecting) layer
    assert canonical(Architecture.parse("0,1,2,0,1,2,0,2/0,0,0,0,0,0,0,0"), space) == \
        Architecture.parse("0,1,2,1,0,2,2,0/0,0,0,0,0,0,0,0")


def test_twins_cost_the_same_and_canonical_is_idempotent():
    space = get_space("mbv2-macro-cifar")
    table = cost_table(space)
    for arch in _all_archs(space):
        twin = canonical(arch, space)
        assert canonical(twin, space) == twin
        assert (table.macs(twin), table.params(twin)) == (table.macs(arch), table.params(arch))


def test_twins_compute_the_same_function():
    """The twin's network with the same weights (taken in order: identities have none) gives the same output."""
    space = get_space("mbv2-macro-cifar", width_mult=0.125)
    arch = Architecture.parse("1,0,2,0,1,0,0,2/0,0,0,0,0,0,0,0")
    twin = canonical(arch, space)
    assert twin != arch
    a, b = FixedNet(space, arch).eval(), FixedNet(space, twin).eval()
    with torch.no_grad():
        for p, q in zip(itertools.chain(a.parameters(), a.buffers()), itertools.chain(b.parameters(), b.buffers())):
            q.copy_(p)
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("name", ["oneshot", "oneshot+", "shufflenetv2+"])
def test_spaces_without_identity_ops_are_left_alone(name):
    space = get_space(name)
    assert canonicalizer(space).trivial
    rng = random.Random(0)
    for _ in range(200):
        arch = sample_architecture(space, rng)
        assert canonical(arch, space) == arch


def test_a_users_space_with_identity_and_widths():
    """Width choices of an identity are one choice; identities move within runs of equal layers only."""
    space = space_from_spec({
        "name": "mine", "input_size": 16, "num_classes": 10, "stem": {"width": 8, "stride": 1},
        "stages": [{"layers": 3, "width": 16, "stride": 2, "ops": ["mbconv-e3-k3", "identity"]},
                   {"layers": 2, "width": 16, "stride": 1, "ops": ["identity", "mbconv-e6-k3"],
                    "activation": "hswish"}],
        "widths": [0.5, 1.0], "head": {"width": 32}})
    c = canonicalizer(space)
    assert c.runs == [[1, 2], [3, 4]] and not c.trivial  # the hswish stage is another shape
    arch = Architecture.parse("1,1,0,0,1/0,0,0,1,0")
    assert canonical(arch, space) == Architecture.parse("1,0,1,1,0/1,0,1,0,1")
    # the first layer's identity projects: its width choice is free, but it stays where it is
    assert canonical(Architecture.parse("1,0,0,1,1/0,1,0,0,0"), space).blocks[0] == 1
    table = cost_table(space)
    rng = random.Random(1)
    for _ in range(300):
        arch = sample_architecture(space, rng)
        twin = canonical(arch, space)
        assert table.macs(twin) == table.macs(arch) and table.params(twin) == table.params(arch)


def test_proxyless_moves_identities_to_the_end_of_each_stage():
    space = get_space("proxyless-mobile")
    rng = random.Random(2)
    table = cost_table(space)
    for _ in range(100):
        arch = sample_architecture(space, rng)
        twin = canonical(arch, space)
        assert table.macs(twin) == table.macs(arch)
        for run in canonicalizer(space).runs:
            ops = [twin.blocks[i] == 6 for i in run]
            assert ops == sorted(ops)  # identities (op 6) only after the other ops


@pytest.mark.parametrize("mode", ["both", "block"])
def test_the_search_sees_twins_as_one_candidate(mode):
    from spos.search.constraints import GeneMap

    assert GeneMap(get_space("oneshot"), mode).canonical() is None  # no twins: the engine is left as it was
    space = get_space("mbv2-macro-cifar")
    genes = GeneMap(space, mode)
    canonical_genes = genes.canonical()
    twin_a = Architecture.parse("1,1,1,0,1,1,1,1/0,0,0,0,0,0,0,0")
    twin_b = Architecture.parse("1,1,1,1,0,1,1,1/0,0,0,0,0,0,0,0")
    a, b = canonical_genes(genes.genes_of(twin_a)), canonical_genes(genes.genes_of(twin_b))
    assert a == b and genes.arch(a) == canonical(twin_a, space) == twin_b
