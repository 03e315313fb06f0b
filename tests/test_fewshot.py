"""Few-shot supernets: routing by the split layers' blocks, the split's copies, resume across it, scoring."""

from __future__ import annotations

import json
import random

import pytest
import torch

from spos.errors import UserError
from spos.nn.calibration import recalibrate_bn
from spos.nn.fewshot import FewShotSuperNet, check_split_layers, split_epoch_of
from spos.space.architecture import Architecture, sample_architecture
from spos.space.searchspace import get_space
from spos.store import checkpoint
from spos.train.config import load_config
from spos.train.loop import run_training

# digits at width 0.25 in the space with identity choices: 4 steps of 256 images an epoch, split after the first
FEW_SHOT = ["space.name=mbv2-macro-cifar", "space.width_mult=0.25", "validation.paths=1", "validation.bn_batches=1",
            "data.val_batch_size=512", "data.batch_size=256", "train.iterations=6", "sampling.few_shot_layers=[0]",
            "sampling.few_shot_split_epoch=1"]


@pytest.fixture(scope="module")
def space():
    return get_space("mbv2-macro-cifar", input_size=8, num_classes=10, in_channels=1, width_mult=0.125)


def _arch(blocks) -> Architecture:
    return Architecture(tuple(blocks), (0,) * len(blocks))


def test_paths_go_to_the_first_sub_supernet_until_the_split_then_by_their_blocks(space):
    net = FewShotSuperNet(space, [0, 2])
    assert len(net.shots) == 9
    archs = [sample_architecture(space, random.Random(seed)) for seed in range(30)]
    assert {net.shot_of(arch) for arch in archs} == {0}
    net.split()
    assert net.shot_of(_arch([2, 0, 1, 0, 0, 0, 0, 0])) == 2 * 3 + 1
    assert net.shot_of(_arch([0, 2, 0, 1, 1, 1, 1, 1])) == 0
    assert len({net.shot_of(arch) for arch in archs}) > 3
    x = torch.randn(2, 1, 8, 8)
    for arch in archs[:4]:
        shot = net.shots[net.shot_of(arch)]
        recalibrate_bn(net.path(arch), [(x, None)])  # extraction recalibrates on the same batch
        net.eval()
        assert torch.equal(net(x, arch), shot(x, arch)) and torch.equal(net.path(arch)(x), shot(x, arch))
        assert {id(p) for p in net.path_parameters(arch)} == {id(p) for p in shot.path_parameters(arch)}
        assert torch.allclose(net.extract(arch, [(x, None)]).eval()(x), net(x, arch), atol=1e-5)


def test_split_layers_and_split_epoch_are_checked(space):
    assert check_split_layers(space, [3, 0]) == (3, 0)
    for layers, words in (([], "empty"), ([8], "not a layer"), ([1, 1], "twice"), (["0"], "not a layer")):
        with pytest.raises(UserError, match=words):
            check_split_layers(space, layers)
    assert split_epoch_of(None, 30) == 15 and split_epoch_of(0, 2) == 0
    with pytest.raises(UserError, match="few_shot_split_epoch 2 is not inside"):
        split_epoch_of(2, 2)


def test_the_split_copies_weights_statistics_and_optimizer_state_once(space):
    net = FewShotSuperNet(space, [1], entangled_kernels=True, aligned_choices=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    arch = _arch([1, 2, 1, 2, 1, 2, 1, 2])
    net(torch.randn(4, 1, 8, 8), arch).sum().backward()
    optimizer.step()
    net.split(optimizer)
    first = net.shots[0].state_dict()
    for shot in net.shots[1:]:
        assert all(torch.equal(value, first[key]) for key, value in shot.state_dict().items())
        for source, target in zip(net.shots[0].parameters(), shot.parameters()):
            if source in optimizer.state:
                momentum = optimizer.state[target]["momentum_buffer"]
                assert torch.equal(momentum, optimizer.state[source]["momentum_buffer"])
                assert momentum.data_ptr() != optimizer.state[source]["momentum_buffer"].data_ptr()
    # a step on a path of sub-supernet 2 moves its weights only
    before = [p.clone() for p in net.parameters()]
    optimizer.zero_grad(set_to_none=True)
    net(torch.randn(4, 1, 8, 8), arch).sum().backward()
    optimizer.step()
    moved = {i for i, (p, q) in enumerate(zip(before, net.parameters())) if not torch.equal(p, q)}
    own = {i for i, p in enumerate(net.parameters()) if any(p is q for q in net.shots[2].parameters())}
    assert moved and moved <= own
    net.split(optimizer)  # once: a second call copies nothing
    assert not torch.equal(next(net.shots[0].parameters()), next(net.shots[2].parameters()))


def test_training_splits_at_the_split_epoch_and_the_checkpoint_rebuilds_it(tmp_path):
    config = load_config("digits-supernet", FEW_SHOT)
    result = run_training(config, tmp_path / "run", progress=False)
    net = result.model
    assert isinstance(net, FewShotSuperNet) and net.is_split and net.split_layers == (0,)
    weights = [next(shot.head.parameters()) for shot in net.shots]
    assert not torch.equal(weights[0], weights[1])  # each trained its own share after the split
    state = checkpoint.load(tmp_path / "run" / "last.pt")
    assert state["few_shot_layers"] == [0]
    rebuilt = checkpoint.build_model(state).eval()
    net.eval()
    x = torch.randn(2, 1, 8, 8)
    for blocks in ([0] * 8, [1] * 8, [2, 1, 0, 2, 1, 0, 2, 1]):
        assert rebuilt.is_split and torch.equal(rebuilt(x, _arch(blocks)), net(x, _arch(blocks)))
    one_shot = load_config("digits-supernet", FEW_SHOT[:-2] + ["train.iterations=1"])
    run_training(one_shot, tmp_path / "plain", progress=False)
    assert "few_shot_layers" not in checkpoint.load(tmp_path / "plain" / "last.pt")  # a SuperNet's file as before


@pytest.mark.slow
@pytest.mark.parametrize("saves", [1, 2], ids=["killed-at-the-split", "killed-after-the-split"])
def test_a_run_killed_across_the_split_resumes_bit_identical(tmp_path, monkeypatch, saves):
    from test_train import run_killed_after

    config = load_config("digits-supernet", [*FEW_SHOT, "train.checkpoint_every_steps=5"])
    straight = run_training(config, tmp_path / "straight", progress=False)
    run_killed_after(config, tmp_path / "resumed", saves, monkeypatch)
    state = checkpoint.load(tmp_path / "resumed" / "last.pt")
    assert bool(state["model"]["split_done"]) == (saves == 2)  # saves at step 4 (epoch end), 5 (mid-epoch), 6
    resumed = run_training(config, tmp_path / "resumed", resume=True, progress=False)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["val_loss"] for r in straight.history] == [r["val_loss"] for r in resumed.history]


def test_search_and_rank_score_a_few_shot_supernet_by_the_sub_supernet_of_each_path(space, tmp_path, capsys):
    from spos.cli import main
    from spos.search.scoring import SupernetScorer

    net = FewShotSuperNet(space, [0])
    net.split()
    with torch.no_grad():
        for index, shot in enumerate(net.shots):  # each sub-supernet answers differently
            next(shot.head.parameters()).mul_(index + 1)
    path = tmp_path / "fewshot.pt"
    checkpoint.save_atomic(checkpoint.supernet_payload(net, config={"data": {"name": "digits"}}), path)
    batches = [(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))]
    scorer = SupernetScorer(checkpoint.load_model(path), batches, batches, "loss")
    for blocks in ([0] * 8, [1] * 8, [2] * 8):
        arch = _arch(blocks)
        alone = SupernetScorer(net.shots[blocks[0]], batches, batches, "loss")
        assert scorer(arch) == pytest.approx(alone(arch))
    fast = ["--bn-batches", "1", "--eval-batches", "1", "--batch-size", "64", "--no-progress", "--holdout-from", "val"]
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"0,1,2,1,1,2,1,2/0,0,0,0,0,0,0,0": 0.9, "1,1,2,1,1,2,1,2/0,0,0,0,0,0,0,0": 0.8,
                                 "2,1,2,1,1,2,1,2/0,0,0,0,0,0,0,0": 0.7}))
    assert main(["rank", "--supernet", str(path), "--ground-truth", str(truth), "--bootstrap", "20",
                 "--output", str(tmp_path / "rank"), *fast]) == 0
    assert json.loads((tmp_path / "rank" / "rank.json").read_text())["statistics"]["n"] == 3
    assert main(["search", "--supernet", str(path), "--output", str(tmp_path / "search"), "--population", "4",
                 "--generations", "1", "--parents", "2", "--mutations", "2", "--crossovers", "2", *fast]) == 0
    assert "best:" in capsys.readouterr().out


def test_a_few_shot_supernet_exported_as_a_model_folder_comes_back_split(space, tmp_path):
    from spos.cli import main
    from spos.store.pretrained import load_folder

    net = FewShotSuperNet(space, [2])
    net.split()
    source = checkpoint.save_atomic(checkpoint.supernet_payload(net), tmp_path / "fewshot.pt")
    assert main(["export", str(source), "--format", "hf", "--output", str(tmp_path / "folder")]) == 0
    loaded = checkpoint.build_model(load_folder(tmp_path / "folder"))
    assert isinstance(loaded, FewShotSuperNet) and loaded.split_layers == (2,) and loaded.is_split
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
