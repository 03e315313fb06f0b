import json
import random

import pytest

from spos.errors import UserError
from spos.space.architecture import Architecture, load_architecture, sample_architecture, save_architecture
from spos.space.searchspace import SearchSpace, get_space


def test_oneshot_preset_is_the_papers_space():
    space = get_space("oneshot")
    assert space.num_layers == 20
    assert space.num_blocks == 4 and space.num_channels == 10
    assert space.channel_scales == (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
    layers = space.layers()
    assert [spec.stride for spec in layers if spec.first] == [2, 2, 2, 2]
    assert [spec.index for spec in layers if spec.first] == [0, 4, 8, 16]
    assert layers[-1].out_size == 7 and space.layout.stem.out_size == 112
    assert space.choice_counts() == [4] * 20 + [10] * 20


def test_oneshot_plus_options():
    space = get_space("oneshot+")
    assert space.stage_activations == ("relu", "hswish", "hswish", "hswish")
    assert space.stage_se == (False, False, True, True)
    assert space.head == "pool-conv"
    assert get_space("shufflenetv2+").stage_widths == (48, 128, 256, 512)


@pytest.mark.parametrize("name", ["oneshot", "oneshot+", "shufflenetv2+"])
@pytest.mark.parametrize("size,final", [(224, 7), (32, 4), (8, 2)])
def test_small_input_variants_keep_the_choice_layers(name, size, final):
    space = get_space(name, input_size=size)
    assert space.num_layers == 20
    assert space.layout.head.in_size == final


def test_unknown_space_and_bad_fields():
    with pytest.raises(UserError, match="unknown search space"):
        get_space("nope")
    with pytest.raises(UserError, match="multiple of 4"):
        get_space("oneshot", stage_widths=(64, 160, 322, 640))
    with pytest.raises(UserError, match="unknown field"):
        SearchSpace.from_dict({"name": "x", "colour": 3})


def test_space_dict_round_trip():
    space = get_space("oneshot+", input_size=32, num_classes=10, width_mult=0.5)
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space


@pytest.mark.parametrize("seed", range(20))
def test_text_and_json_round_trip(seed):
    space = get_space("oneshot")
    arch = sample_architecture(space, random.Random(seed))
    assert Architecture.parse(str(arch)) == arch
    assert Architecture.parse(json.dumps(arch.to_dict())) == arch
    assert Architecture.from_genes(arch.genes) == arch
    assert hash(Architecture.parse(str(arch))) == hash(arch)


@pytest.mark.parametrize("text,message", [
    ("0,0,3/1,1", "3 block choices but 2 channel choices"),
    ("0,0,x/1,1,1", "comma-separated integers"),
    ("just words", "expected 'B,B"),
    ("{not json", "invalid JSON"),
])
def test_parse_errors_are_one_line(text, message):
    with pytest.raises(UserError, match=message) as info:
        Architecture.parse(text)
    assert "\n" not in str(info.value)


def test_validation_names_position_value_and_range():
    space = get_space("oneshot")
    blocks, channels = [0] * 20, [4] * 20
    blocks[7] = 4
    with pytest.raises(UserError, match=r"block choice 4 at layer 7 is out of range 0\.\.3"):
        Architecture(blocks, channels).validate(space)
    channels[3] = 10
    with pytest.raises(UserError, match=r"channel choice 10 at layer 3 is out of range 0\.\.9"):
        Architecture([0] * 20, channels).validate(space)
    with pytest.raises(UserError, match="19 layers but space 'oneshot' has 20"):
        Architecture([0] * 19, [0] * 19).validate(space)


def test_sampling_modes_and_warmup():
    space = get_space("oneshot")
    rng = random.Random(1)
    for _ in range(50):
        block_only = sample_architecture(space, rng, mode="block")
        assert block_only.channels == (space.default_channel,) * 20
        channel_only = sample_architecture(space, rng, mode="channel")
        assert channel_only.blocks == (0,) * 20
        warm = sample_architecture(space, rng, min_channel=7)
        assert min(warm.channels) >= 7
    with pytest.raises(UserError):
        sample_architecture(space, rng, mode="sideways")


def test_uniform_sampling_covers_every_choice():
    space = get_space("oneshot")
    rng = random.Random(0)
    seen = [set() for _ in range(40)]
    for _ in range(400):
        for gene, values in zip(sample_architecture(space, rng).genes, seen):
            values.add(gene)
    assert all(len(values) == count for values, count in zip(seen, space.choice_counts()))


def test_architecture_file_round_trip(tmp_path):
    space = get_space("oneshot+", input_size=32, num_classes=10)
    arch = sample_architecture(space, random.Random(3))
    path = save_architecture(tmp_path / "best.json", arch, space, accuracy=0.5)
    loaded, loaded_space = load_architecture(path)
    assert loaded == arch and loaded_space == space
    data = json.loads(path.read_text())
    assert data["blocks"] == list(arch.blocks) and data["accuracy"] == 0.5
    with pytest.raises(UserError, match="does not exist"):
        load_architecture(tmp_path / "missing.json")


def test_describe_in_words():
    space = get_space("oneshot")
    lines = Architecture([3] + [0] * 19, [9] * 20).describe(space)
    assert len(lines) == 20
    assert "xception-3x3" in lines[0] and "mid 64 (x2)" in lines[0]


@pytest.mark.parametrize("name,size", [("oneshot+", 32), ("mbv2-macro-cifar", 32)])
def test_networks_and_counts_are_built_from_the_layout_alone(name, size, monkeypatch):
    """Every shape is resolved once, in the space's layout: building a network, a supernet or a cost
    table asks no block for a width again, and the modules have the layout's shapes."""
    import torch

    from spos.nn.fixed import FixedNet
    from spos.nn.supernet import SuperNet
    from spos.space import blocks, flops

    space = get_space(name, input_size=size, num_classes=10, width_mult=0.25)
    layout = space.layout

    def asked(*args):
        raise AssertionError("a width was asked of a block after the layout was built")

    for cls in vars(blocks).values():
        if isinstance(cls, type) and issubclass(cls, blocks.Block):
            monkeypatch.setattr(cls, "mid_channels", asked)
    arch = sample_architecture(space, random.Random(0))
    flops.cost_table.cache_clear()
    cost = flops.count(space, arch)
    net, supernet = FixedNet(space, arch).eval(), SuperNet(space)
    assert sum(p.numel() for p in net.parameters()) == cost.params
    assert layout.input_shape == (space.in_channels, size, size)
    x = torch.randn(2, *layout.input_shape)
    stem = net.first_conv(x)
    assert stem.shape[1:] == (layout.stem.out_channels, layout.stem.out_size, layout.stem.out_size)
    features = net.features(stem)
    head = layout.head
    assert features.shape[1:] == (head.in_channels, head.in_size, head.in_size)
    assert net.head(features).shape == (2, head.num_classes)
    assert supernet.mid_widths == [spec.mid_widths for spec in layout.layers]
    assert [len(spec.mid_widths[0]) for spec in layout.layers] == [space.num_channels] * space.num_layers
