"""Search, rank and eval score only on images the network never trained on, and say which images they scored.

The cases of issue #23: a supernet trained with ``data.holdout: 0`` (every training image seen), a
``--holdout`` larger than the supernet's (a superset of its hold-out, so partly seen), a converted
official supernet (no config at all); and the ways out: the supernet's own hold-out or part of it,
the validation split or part of it (``--holdout-from val``), or ``--allow-trained-images``. `spos eval
--split holdout` follows the same rule (issue #34 item 1), and its BN calibration never moves with ``--holdout``.
"""

from __future__ import annotations

import json

import pytest
import torch

from spos.cli import main
from spos.data.datasets import build_datasets
from spos.errors import UserError
from spos.nn.supernet import SuperNet
from spos.rank.choose import draw_architectures
from spos.search.holdout import scoring_sets, with_supernet_data
from spos.search.run import SearchJob
from spos.store import checkpoint

SEARCH = ["--population", "4", "--generations", "1", "--parents", "2", "--mutations", "2", "--crossovers", "2",
          "--bn-batches", "1", "--eval-batches", "1", "--batch-size", "64", "--no-progress"]
RANK = ["--bn-batches", "1", "--eval-batches", "1", "--batch-size", "64", "--bootstrap", "20", "--no-progress"]


@pytest.fixture(scope="module")
def supernets(tmp_path_factory, digits_space, digits_run):
    """Supernet files: one that held out 0.2 of digits (287 images), one trained on all of it, one with no
    config (as `spos convert-official` writes them)."""
    folder = tmp_path_factory.mktemp("supernets")
    configs = {"held": digits_run, "all": {**digits_run, "data": {"name": "digits", "holdout": 0}}, "official": None}
    paths = {}
    for name, config in configs.items():
        extra = {"config": config} if config else {}
        paths[name] = checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(digits_space), **extra),
                                             folder / f"{name}.pt")
    return paths


@pytest.fixture(scope="module")
def truth(tmp_path_factory, digits_space):
    path = tmp_path_factory.mktemp("truth") / "truth.json"
    archs = draw_architectures(digits_space, 3, "none", 2)
    path.write_text(json.dumps({str(a): 0.5 + i / 10 for i, a in enumerate(archs)}))
    return path


def _rows(images: torch.Tensor) -> set:
    return {tuple(row) for row in images.flatten(1).tolist()}


def _scored(supernet, space, **job) -> tuple:
    """(the images a search of ``supernet`` with ``job``'s settings scores, their record)."""
    saved = checkpoint.load(supernet).get("config") or {}
    sets = scoring_sets(with_supernet_data(SearchJob(supernet=str(supernet), **job), saved), space)
    return sets.scored.images, sets.record


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# -- which images --------------------------------------------------------------------------------

def test_by_default_the_scored_images_are_exactly_the_supernets_hold_out(supernets, digits_space):
    held = build_datasets("digits", holdout=0.2, seed=0)  # what the supernet's run split off
    images, record = _scored(supernets["held"], digits_space)
    assert torch.equal(images, held.holdout.images)
    assert record["unseen_by_supernet"] and record["images"] == 287 and record["from"] == "train"


def test_a_smaller_holdout_is_a_part_of_the_supernets_hold_out(supernets, digits_space):
    held = _rows(build_datasets("digits", holdout=0.2, seed=0).holdout.images)
    images, record = _scored(supernets["held"], digits_space, holdout=100)
    assert len(images) == 100 and _rows(images) <= held
    assert record["unseen_by_supernet"] and record["holdout"] == 100


def test_a_larger_holdout_is_refused_and_with_the_flag_scores_some_trained_images(supernets, digits_space):
    with pytest.raises(UserError, match=r"asks for 431 images but the supernet held out 287 .* other 144"):
        _scored(supernets["held"], digits_space, holdout=431)
    images, record = _scored(supernets["held"], digits_space, holdout=431, allow_trained_images=True)
    trained = _rows(build_datasets("digits", holdout=0.2, seed=0).train.images)
    assert len(images) == 431 and len(_rows(images) & trained) >= 144
    assert not record["unseen_by_supernet"] and "--allow-trained-images" in record["basis"]


@pytest.mark.parametrize("name", ["all", "official"])
def test_a_supernet_that_held_nothing_out_is_scored_on_val_or_not_at_all(supernets, digits_space, name):
    with pytest.raises(UserError, match="--holdout-from val .* --allow-trained-images"):
        _scored(supernets[name], digits_space)
    val = build_datasets("digits").val.images
    images, record = _scored(supernets[name], digits_space, holdout_from="val", holdout=100)
    assert len(images) == 100 and _rows(images) <= _rows(val) and record["from"] == "val"
    images, record = _scored(supernets[name], digits_space, split="val")
    assert torch.equal(images, val) and record["split"] == "val" and record["unseen_by_supernet"]
    _, record = _scored(supernets[name], digits_space, allow_trained_images=True)
    assert not record["unseen_by_supernet"]


# -- the commands: refused in one line, or the outputs record the images --------------------------

@pytest.mark.parametrize("name, extra", [("all", []), ("official", []), ("held", ["--holdout", "431"])])
def test_search_and_rank_refuse_images_the_supernet_trained_on(supernets, truth, tmp_path, capsys, name, extra):
    for argv in (["search", *SEARCH], ["rank", "--ground-truth", str(truth), *RANK]):
        out = tmp_path / argv[0]
        assert main([*argv, "--supernet", str(supernets[name]), "--output", str(out), *extra]) == 2
        err = _one_error_line(capsys)
        assert "--allow-trained-images" in err and ("--holdout-from val" in err or "--holdout 287" in err)
        assert not out.exists()


def _search_records(out) -> list[dict]:
    return [json.loads((out / name).read_text())["scored_images"] for name in ("job.json", "best.json",
                                                                                "summary.json")]


def test_search_outputs_record_the_images_they_scored(supernets, tmp_path, capsys):
    out = tmp_path / "held"
    assert main(["search", "--supernet", str(supernets["held"]), "--output", str(out), *SEARCH]) == 0
    assert "64 digits images, the supernet's hold-out" in capsys.readouterr().out
    for record in _search_records(out):
        assert record["unseen_by_supernet"] and record["images"] == 64 and record["holdout"] == 0.2
    assert main(["search", "--supernet", str(supernets["held"]), "--output", str(out), "--resume",
                 "--allow-trained-images", *SEARCH]) == 2
    assert "allow_trained_images None -> True" in _one_error_line(capsys)  # a resume keeps the rule it began with
    out = tmp_path / "allowed"
    assert main(["search", "--supernet", str(supernets["all"]), "--output", str(out), "--allow-trained-images",
                 *SEARCH]) == 0
    assert all(not record["unseen_by_supernet"] for record in _search_records(out))


def test_rank_records_the_images_it_scored(supernets, truth, tmp_path):
    for name, extra, unseen in (("held", [], True), ("official", ["--holdout-from", "val"], True),
                                ("all", ["--allow-trained-images"], False)):
        out = tmp_path / name
        assert main(["rank", "--supernet", str(supernets[name]), "--ground-truth", str(truth), "--output", str(out),
                     *RANK, *extra]) == 0
        assert json.loads((out / "rank.json").read_text())["scored_images"]["unseen_by_supernet"] is unseen


# -- spos eval: the same rule, and BN calibrated on the run's own training split ---------------------

ARCH = "0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3/0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3"


@pytest.fixture(scope="module")
def trained_on_all(tmp_path_factory, digits_space, digits_run):
    """A fixed network whose run trained on every digits training image (data.holdout 0)."""
    from spos.nn.fixed import FixedNet
    from spos.space.architecture import Architecture

    net = FixedNet(digits_space, Architecture.parse(ARCH))
    config = {**digits_run, "data": {"name": "digits", "holdout": 0}}
    return checkpoint.save_atomic(checkpoint.fixed_payload(net, config=config),
                                  tmp_path_factory.mktemp("fixed") / "all.pt")


def _eval(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(["eval", *argv, "--bn-batches", "2", "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _evaluated_network(monkeypatch, capsys, argv: list[str]):
    """The network `spos eval ARGV` evaluated (its BN as eval recalibrated it)."""
    import spos.train

    seen, real = {}, spos.train.evaluate

    def capture(model, loader, **kwargs):
        seen["model"] = model
        return real(model, loader, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(spos.train, "evaluate", capture)
        _eval(capsys, argv)
    return seen["model"].eval()


def test_eval_calibrates_a_supernet_path_on_its_runs_training_split_whatever_holdout_says(
        supernets, monkeypatch, capsys):
    from argparse import Namespace

    from spos.cli.deploy import supernet_path_network
    from spos.space.architecture import Architecture

    data = checkpoint.load(supernets["held"])
    exported = supernet_path_network(checkpoint.build_model(data), Architecture.parse(ARCH), data, Namespace(
        bn_batches=2, data=None, data_root=None, download=False, input=None)).eval()  # what `spos export` ships
    batch = build_datasets("digits").val.images[:64]
    with torch.no_grad():
        expected = exported(batch)
        for extra in ([], ["--split", "holdout"], ["--split", "holdout", "--holdout", "100"],
                      ["--split", "holdout", "--holdout", "0.3", "--allow-trained-images"]):
            evaluated = _evaluated_network(monkeypatch, capsys, [str(supernets["held"]), "--arch", ARCH, *extra])
            assert torch.allclose(evaluated(batch), expected, atol=1e-5), extra
    capsys.readouterr()
    assert main(["eval", str(supernets["held"]), "--arch", ARCH, "--holdout", "0.3"]) == 2  # it moved BN once
    assert "--split holdout" in _one_error_line(capsys)


@pytest.mark.parametrize("name, extra", [("all", []), ("official", []), ("held", ["--holdout", "431"]),
                                         ("fixed", [])])
def test_eval_refuses_images_the_network_trained_on(supernets, trained_on_all, capsys, name, extra):
    source = trained_on_all if name == "fixed" else supernets[name]
    argv = [str(source), *([] if name == "fixed" else ["--arch", ARCH]), "--split", "holdout", *extra,
            "--data", "digits"]
    assert main(["eval", *argv]) == 2
    err = _one_error_line(capsys)
    assert "--allow-trained-images" in err and ("--holdout-from val" in err or "--holdout 287" in err)
    record = _eval(capsys, [*argv, "--allow-trained-images"])["scored_images"]
    assert not record["unseen_by_supernet"] and "--allow-trained-images" in record["basis"]


def test_eval_records_the_images_it_scored(supernets, trained_on_all, capsys):
    held = [str(supernets["held"]), "--arch", ARCH]
    printed = _eval(capsys, [*held, "--split", "holdout"])
    assert printed["images"] == 287 and printed["scored_images"]["unseen_by_supernet"]
    assert printed["scored_images"]["basis"].startswith("the supernet's hold-out")
    for argv, images, unseen in (([*held], 360, True), ([*held, "--split", "train"], 1150, False),
                                 ([*held, "--split", "holdout", "--holdout", "100"], 100, True),
                                 ([str(trained_on_all), "--split", "holdout", "--holdout-from", "val", "--holdout",
                                   "100"], 100, True)):
        record = _eval(capsys, argv)["scored_images"]
        assert (record["images"], record["unseen_by_supernet"]) == (images, unseen), argv
    assert main(["eval", *held, "--split", "holdout", "--bn-batches", "2"]) == 0
    assert "scored: 287 digits images, the supernet's hold-out" in capsys.readouterr().out
