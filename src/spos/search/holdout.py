"""The hold-out rule: a supernet's paths are scored only on images it never trained on (its recorded hold-out, the validation split, or a hold-out carved from val), unless --allow-trained-images says otherwise; one check for search, rank and eval, and the record of which images were scored."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spos.errors import UserError
from spos.space.searchspace import SearchSpace

if TYPE_CHECKING:
    from spos.search.run import SearchJob

log = logging.getLogger(__name__)


HOLDOUT_SOURCES = ("train", "val")



DEFAULT_HOLDOUT = 0.2  # of val with --holdout-from val; of train with --allow-trained-images



def with_supernet_data(job, saved_config: dict):
    """``job`` (a search or rank job) scoring on the supernet's own data unless told otherwise, with the
    hold-out the supernet recorded (``supernet_holdout``: the images it never trained on, carved by its
    training seed) as the default. A job whose scored images the supernet may have trained on is
    refused here (`check_holdout_source`) or, once the data's size is known, by `scoring_sets`."""
    from dataclasses import replace

    data = saved_config.get("data") or {}
    same_data = job.data is None or job.data == data.get("name")
    recorded = (data.get("holdout") or None) if same_data else None
    job = replace(job, data=job.data or data.get("name") or "digits",
                  data_root=job.data_root or (data.get("root") if same_data else None),
                  split_seed=job.split_seed if job.split_seed is not None else
                  (saved_config.get("train", {}).get("seed") if same_data else None), supernet_holdout=recorded)
    check_holdout_source(job, _unknown_holdout(saved_config, same_data, job.data))
    default = recorded if job.holdout_from == "train" and recorded else DEFAULT_HOLDOUT
    return replace(job, holdout=job.holdout if job.holdout is not None else default)



def _unknown_holdout(saved_config: dict, same_data: bool, name: str) -> str:
    """Why a supernet has no hold-out on ``name`` that it is known never to have trained on."""
    if not saved_config:
        return "records no training config (as a converted official checkpoint), so nothing says which images it saw"
    if not same_data:
        return f"was trained on {saved_config['data'].get('name')}, so nothing says which {name} images it saw"
    return f"was trained on every {name} training image (data.holdout 0)"



def check_holdout_source(job, why: str) -> None:
    """Refuse, before any data is read, a job that would score on a hold-out carved from training images
    its supernet may have trained on (``why`` says why no hold-out of the supernet's applies)."""
    if job.holdout_from not in HOLDOUT_SOURCES:
        raise UserError(f"--holdout-from {job.holdout_from!r}: use train or val")
    split = getattr(job, "split", "holdout")  # a rank job scores the hold-out split only
    if split == "val" and job.holdout_from == "val":
        raise UserError("--split val scores the whole validation split and --holdout-from val a part of it; "
                        "give one of the two")
    if split == "val" or job.holdout_from == "val" or job.supernet_holdout or job.allow_trained_images:
        return
    raise UserError(f"the {_network(job)} {job.supernet} {why}: a hold-out carved from the {job.data} training "
                    "images would score it on images it trained on; pass --holdout-from val to score on part of "
                    "the validation split, or --allow-trained-images to score on training images anyway")



def _network(job) -> str:
    """What the hold-out rule's messages call ``job``'s checkpoint (a rank job's is always a supernet)."""
    return getattr(job, "network", "supernet")



@dataclass
class ScoringSets:
    train: object  # the supernet's training split: BN is recalibrated on it
    scored: object  # the images candidates are scored on
    record: dict  # which images those are and whether the supernet trained on them, for the outputs



def scoring_sets(job: SearchJob, space: SearchSpace, convention=None) -> ScoringSets:
    """The training split to recalibrate on and the images to score (`with_supernet_data` settled the
    job): the supernet's hold-out or a seeded part of it, the validation split or a part of it, or, with
    ``allow_trained_images`` only, a hold-out carved from images the supernet trained on."""
    from spos.data.datasets import carve, holdout_count

    from_train = job.split == "holdout" and job.holdout_from == "train"
    if from_train and not job.supernet_holdout:
        splits = _build_splits(job, space, convention, job.holdout)
        return _scoring(job, splits.train, splits.holdout, False, "training images, asked for with "
                        f"--allow-trained-images: the {_network(job)} records no hold-out, so it trained on them")
    splits = _build_splits(job, space, convention, job.supernet_holdout or 0)  # the supernet's own train split
    if job.split == "val":
        log.warning("warning: scoring candidates on the val/test split: the search then overfits the set you "
                    "report on; use --split holdout")
        return _scoring(job, splits.train, splits.val, True, "the validation split, which training never reads")
    if job.holdout_from == "val":
        return _scoring(job, splits.train, carve(splits.val, job.holdout, job.seed), True,
                        f"a part of the validation split drawn by seed {job.seed}; training never reads it")
    held, total = len(splits.holdout), len(splits.train) + len(splits.holdout)
    wanted = holdout_count(job.holdout, total)
    own = f"the {_network(job)}'s hold-out (data.holdout {job.supernet_holdout}, seed {job.split_seed})"
    if wanted == held:
        return _scoring(job, splits.train, splits.holdout, True, own)
    if wanted < held:
        return _scoring(job, splits.train, carve(splits.holdout, wanted, job.seed), True,
                        f"{wanted} of the {held} images of {own}, drawn by seed {job.seed}")
    if not job.allow_trained_images:
        raise UserError(f"--holdout {job.holdout} asks for {wanted} images but the {_network(job)} held out {held} "
                        f"(data.holdout {job.supernet_holdout}): it trained on the other {wanted - held}; give "
                        f"--holdout {held} or fewer (or omit it), or pass --allow-trained-images")
    larger = _build_splits(job, space, convention, job.holdout)
    return _scoring(job, larger.train, larger.holdout, False, f"{own} and {wanted - held} images it trained "
                    "on, asked for with --allow-trained-images")



def _build_splits(job: SearchJob, space: SearchSpace, convention, holdout):
    from spos.data.datasets import build_datasets

    splits = build_datasets(job.data, job.data_root, download=job.download, holdout=holdout,
                            seed=job.seed if job.split_seed is None else job.split_seed,
                            input_size=space.input_size, num_classes=space.num_classes, convention=convention)
    splits.info.check_fits(space)
    return splits



def _scoring(job: SearchJob, train, scored, unseen: bool, basis: str) -> ScoringSets:
    """`ScoringSets` with its record: what `spos search` and `spos rank` write about the images they scored."""
    images = len(scored) if job.eval_batches is None else min(len(scored), job.eval_batches * job.batch_size)
    held = job.split != "val"
    record = scored_images_record(job.data, job.split, job.holdout_from if held else None,
                                  job.holdout if held else None, images, unseen, basis)
    return ScoringSets(train, scored, record)



def scored_images_record(data: str, split: str, source: str | None, holdout, images: int, unseen: bool,
                         basis: str) -> dict:
    """The ``scored_images`` record (`SCORED_IMAGES`) search, rank and eval write: which images were scored
    and whether the checkpoint trained on them (``unseen_by_supernet``), so no number passes for a hold-out
    one unless it is one."""
    return {"data": data, "split": split, "from": source, "holdout": holdout, "images": images,
            "unseen_by_supernet": unseen, "basis": basis}



def load_scoring_data(job: SearchJob, space: SearchSpace, device, convention=None):
    """(calibration batches, scored batches, the record of `scoring_sets`), on the device."""
    from spos.data.loaders import build_loader
    from spos.nn.calibration import calibration_batches
    from spos.search.scoring import materialize

    sets = scoring_sets(job, space, convention)
    calibration = materialize(calibration_batches(sets.train, job.bn_batches), device)  # as eval and export
    loader = build_loader(sets.scored, batch_size=job.batch_size, train=False, workers=job.workers,
                          device=str(device))
    evaluation = materialize(loader, device, limit=job.eval_batches)
    return calibration, evaluation, sets.record
