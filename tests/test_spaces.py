"""Spaces as data: the YAML presets, the block registry, user blocks and every command on any space."""

import json
import math
import random
import re
import sys

import pytest
import torch
from conftest import doc_block

from spos.cli import main
from spos.errors import UserError
from spos.space.architecture import (
    Architecture,
    load_architecture,
    sample_architecture,
    save_architecture,
    uniform_architecture,
)
from spos.space.blocks import make_block, registered_blocks
from spos.space.flops import cost_table, count
from spos.space.searchspace import PRESETS, get_space, load_space, space_from_spec, space_to_spec
from spos.train.sampler import PathSampler


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_round_trips_through_its_declaration(name):
    space = get_space(name)
    assert space.name == name
    assert space_from_spec(json.loads(json.dumps(space_to_spec(space)))) == space
    assert len(space.choice_counts()) == 2 * space.num_layers


def test_mbv2_macro_cifar_is_the_issue_space():
    space = get_space("mbv2-macro-cifar")
    assert (space.input_size, space.stem_width, space.stage_repeats) == (32, 32, (2, 3, 3))
    assert [(s.out_channels, s.stride) for s in space.layers() if s.first] == [(64, 2), (128, 2), (256, 2)]
    assert all(spec.ops == ("identity", "mbconv-e3-k3", "mbconv-e6-k5") for spec in space.layers())
    assert math.prod(space.op_counts) * space.num_channels ** space.num_layers == 6561
    macs = [count(space, uniform_architecture(space, op, 0)).macs for op in range(3)]
    assert macs[0] < macs[1] < macs[2]
    # every layer skipped: stem, the three stride-2 projections and the head
    assert macs[0] == 7_713_280


def test_proxyless_mobile_layout():
    space = get_space("proxyless-mobile")
    specs = space.layers()
    assert specs[0].ops == ("mbconv-e1-k3",) and specs[0].out_channels == 16
    assert [s.out_channels for s in specs if s.first][1:] == [24, 40, 80, 96, 192, 320]
    assert [s.stride for s in specs if s.first][1:] == [2, 2, 2, 1, 2, 1]
    assert all(len(s.ops) == (6 if s.first else 7) for s in specs[1:])
    assert all(("identity" in s.ops) == (not s.first) for s in specs[1:])
    assert space.layout.head.in_size == 7


def test_small_inputs_adapt_strides_of_the_new_presets():
    assert get_space("mbv2-macro-cifar", input_size=8).layout.head.in_size == 2
    assert get_space("proxyless-mobile", input_size=32).layout.head.in_size == 4


def test_op_names_and_registry_errors():
    assert {"shufflenet", "xception", "mbconv", "identity"} <= set(registered_blocks())
    assert make_block("mbconv-e6-k5").name == "mbconv-e6-k5"
    assert make_block("shufflenet-7x7").kernel == 7
    with pytest.raises(UserError, match="unknown op 'ghost-k3'.*--plugin"):
        make_block("ghost-k3")
    with pytest.raises(UserError, match="cannot read option"):
        make_block("mbconv-z3")
    with pytest.raises(UserError, match="kernel 4"):
        make_block("mbconv-e3-k4")


def test_space_file_errors_are_one_line(tmp_path):
    spec = space_to_spec(get_space("mbv2-macro-cifar"))
    bad = dict(spec, colour="red")
    with pytest.raises(UserError, match="unknown key"):
        space_from_spec(bad)
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nstages: [{layers: 1, width: 8, ops: [warp-k3]}]\nhead: {width: 16}\n")
    with pytest.raises(UserError, match="unknown op 'warp-k3'") as info:
        load_space(str(path))
    assert "\n" not in str(info.value)
    path.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space(str(path))


def test_architecture_files_name_every_op(tmp_path):
    space = get_space("mbv2-macro-cifar")
    arch = sample_architecture(space, random.Random(0))
    path = save_architecture(tmp_path / "a.json", arch, space)
    data = json.loads(path.read_text())
    assert data["space_name"] == "mbv2-macro-cifar"
    assert data["ops"] == [spec.ops[b] for spec, b in zip(space.layers(), arch.blocks)]
    assert load_architecture(path) == (arch, space)
    assert Architecture.parse(str(arch)) == arch
    with pytest.raises(UserError, match="block choice 3 at layer 0"):
        Architecture((3,) + (0,) * 7, (0,) * 8).validate(space)


def test_fair_sampling_covers_every_op_with_uneven_counts():
    space = get_space("proxyless-mobile", input_size=32, num_classes=10, width_mult=0.25)
    paths = PathSampler(space, 0, strategy="fair", mode="op").sample_step()
    assert len(paths) == 7
    for layer, count_ in enumerate(space.op_counts):
        assert set(p.blocks[layer] for p in paths) == set(range(count_))


@pytest.mark.parametrize("name", PRESETS)
def test_analytic_counter_speed_is_table_lookups(name):
    """The cost table answers from per-layer look-ups: many architectures in one vectorised call."""
    import numpy as np

    space = get_space(name)
    table = cost_table(space)
    rng = random.Random(0)
    archs = [sample_architecture(space, rng) for _ in range(200)]
    macs, _ = table.batch(np.array([a.blocks for a in archs]), np.array([a.channels for a in archs]))
    assert macs.tolist() == [table.macs(a) for a in archs]


def test_documented_user_block_and_space_run_in_every_command(tmp_path, monkeypatch, capsys, caplog):
    """The documented plugin example (docs/spaces.md), every command of it: the latency table it builds is accepted by
    the search on its supernet, and training says what digits-supernet's width_mult does to the space."""
    plugin = tmp_path / "myblocks.py"
    plugin.write_text(doc_block("docs/spaces.md", "python", "# myblocks.py"))
    space_file = tmp_path / "myspace.yaml"
    space_file.write_text(doc_block("docs/spaces.md", "yaml", "# myspace.yaml"))
    commands = [line.split() for line in
                doc_block("docs/spaces.md", "bash", "spos train-supernet --plugin").splitlines()]
    assert len(commands) == 6
    monkeypatch.chdir(tmp_path)
    fast = {"train-supernet": ["--set", "train.iterations=3", "--no-progress"],
            "search": ["--population", "4", "--generations", "1", "--parents", "2", "--bn-batches", "1",
                       "--no-progress"],
            "train": ["--set", "train.iterations=3", "--no-progress"],
            "export": [], "latency": ["--repeats", "1", "--check", "2", "--no-progress"]}
    with caplog.at_level("INFO"):
        for argv in commands:
            assert argv[0] == "spos"
            assert main(argv[1:] + fast[argv[1]]) == 0, argv
    assert "space my-space: the config's space.width_mult 0.25 scales every width (stem, stages, last conv: " \
           "16/32/64/128 -> 4/8/16/32)" in caplog.text
    printed = capsys.readouterr().out
    assert "0.00M" not in printed and "0.0M" not in printed and "0.00M" not in caplog.text
    assert re.search(r"best: \S+ .* [0-9.]+k FLOPs .* [0-9.]+ ms", printed)  # the front search's best, with latency
    assert "predictor error on 2 random architectures" in printed
    arch, space = load_architecture(tmp_path / "runs/my-search/best.json")
    assert space.name == "my-space" and any(op.startswith("sepconv") for op in space.stage_ops[0])
    assert (tmp_path / "runs/my-net/best.onnx").is_file() or list((tmp_path / "runs/my-net").glob("*.onnx"))
    table = json.loads((tmp_path / "runs/my-latency.json").read_text())
    assert table
    sys.modules.pop("myblocks", None)


def test_a_space_with_an_unregistered_block_names_the_plugin_option(tmp_path):
    space_file = tmp_path / "s.yaml"
    space_file.write_text(doc_block("docs/spaces.md", "yaml", "# myspace.yaml").replace("sepconv", "nosuchblock"))
    assert main(["profile", "0,0,0,0/0,0,0,0", "--space", str(space_file), "--no-latency"]) == 2


def test_plugin_that_cannot_be_imported_is_one_line(tmp_path, capsys):
    assert main(["zoo", "--plugin", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    assert main(["zoo", "--plugin", str(bad)]) == 2
    assert "boom" in capsys.readouterr().err


def test_extract_on_mbconv_supernet_matches_after_training_step():
    """A training step on an entangled MBConv supernet, then extraction still equals the path."""
    from spos.nn.calibration import recalibrate_bn
    from spos.nn.supernet import SuperNet

    space = get_space("mbv2-macro-cifar", input_size=8, num_classes=10, width_mult=0.25)
    supernet = SuperNet(space, entangled_kernels=True)
    rng = random.Random(0)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    for _ in range(3):
        arch = sample_architecture(space, rng)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(supernet(x, arch), y).backward()
        optimizer.step()
    arch = sample_architecture(space, rng)
    recalibrate_bn(supernet.path(arch), [(x, y)])
    supernet.eval()
    with torch.no_grad():
        assert (supernet.extract(arch, [(x, y)]).eval()(x) - supernet(x, arch)).abs().max() <= 1e-5


def test_channel_warmup_on_a_space_with_one_width():
    space = get_space("mbv2-macro-cifar", input_size=8, num_classes=10, width_mult=0.25)
    sampler = PathSampler(space, 0, channel_warmup_epochs=2)
    assert sampler.min_channel == 0
    assert sampler.sample().validate(space)


@pytest.fixture(scope="module")
def mbv2_supernet_file(tmp_path_factory, digits_run):
    from spos.nn.supernet import SuperNet
    from spos.store import checkpoint

    space = get_space("mbv2-macro-cifar", input_size=8, num_classes=10, in_channels=1, width_mult=0.25)
    path = tmp_path_factory.mktemp("mbv2") / "supernet.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(space, entangled_kernels=True), config=digits_run),
                           path)
    return path


@pytest.mark.parametrize("algorithm,mode", [("evolution", "op"), ("random", "both"), ("nsga2", "op")])
def test_every_search_algorithm_on_an_mbconv_space(mbv2_supernet_file, tmp_path, algorithm, mode):
    out = tmp_path / "search"
    extra = ["--objectives", "acc,flops"] if algorithm == "nsga2" else ["--algorithm", algorithm]
    assert main(["search", "--supernet", str(mbv2_supernet_file), "--mode", mode, "--output", str(out),
                 "--population", "4", "--generations", "2", "--parents", "2", "--bn-batches", "1",
                 "--flops-max", "2e6", "--no-progress", *extra]) == 0
    best = json.loads((out / "best.json").read_text())
    assert best["space_name"] == "mbv2-macro-cifar" and len(best["ops"]) == 8
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history and all(r["flops"] <= 2e6 for r in history)


def test_supernet_sampling_under_a_flops_window_on_an_mbconv_space():
    space = get_space("mbv2-macro-cifar")
    sampler = PathSampler(space, 0, flops_min=40e6, flops_max=60e6)
    table = cost_table(space)
    assert all(40e6 <= table.macs(sampler.sample()) <= 60e6 for _ in range(20))
