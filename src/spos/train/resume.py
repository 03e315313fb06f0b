"""What a run's checkpoint needs to be resumed exactly: the state it must hold (checked by one schema where it is read), the RNG state of every generator, which checkpoint a resume reads, and the one-line refusals when it cannot."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from spos.errors import UserError
from spos.io.schema import MayBeMissing, problem
from spos.store import checkpoint
from spos.train.config import resume_differences


def _rng_state() -> dict:
    """The global RNG states as plain data (tensors, ints, lists), loadable with weights_only=True."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, words, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
             "python": [version, list(words), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state



def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])



# What a checkpoint needs to be resumed (a `spos.io.schema` schema), checked where it is read: a damaged or
# hand-made last.pt is one line naming it, not a KeyError in the middle of restoring it.
TRAINING_STATE = {
    "model": dict, "optimizer": {"state": dict, "param_groups": [dict]}, "scaler": dict, "ema": (dict, None),
    "sampler": ({"rng": list, "epoch": int}, None),
    "rng": {"torch": torch.Tensor, "python": list, "cuda": MayBeMissing([torch.Tensor]),
            "numpy": {"name": str, "keys": torch.Tensor, "pos": int, "has_gauss": int, "cached_gaussian": float}},
    "epoch": int, "step": int, "batches_done": int, "best_top1": float, "history": MayBeMissing([dict]),
    "config": dict, "epoch_sums": MayBeMissing(({"loss": torch.Tensor, "correct": torch.Tensor, "seen": int,
                                                 "seconds": MayBeMissing(float),
                                                 "pending": MayBeMissing(torch.Tensor)}, None)),  # at a stop
}



def resume_checkpoint(output: Path) -> Path | None:
    """The checkpoint a resume continues: ``last.pt``, or ``previous.pt`` when a kill came between moving
    ``last.pt`` aside and writing the new one (`Trainer.save`); None when the run was killed before its first."""
    for name in ("last.pt", "previous.pt"):
        if (output / name).exists() or (output / name).is_symlink():
            return output / name
    return None



def cannot_resume(path: Path, why: str) -> str:
    """The one line of a resume that cannot use its checkpoint: it stops, changes nothing, and says how to go on
    (never a silent start from scratch that replaces the run's best.pt)."""
    previous = path.with_name("previous.pt")
    if path.name == "last.pt" and previous.is_file():
        how = (f"to go on from the checkpoint before it, move {previous} to {path} and resume again, or start a "
               "new run in another --output")
    else:
        how = "start a new run in another --output"
    return f"--resume: no usable checkpoint in {path.parent}: {why}; nothing was changed: {how}"



def load_resume_state(output: Path) -> dict | None:
    """The checkpoint `resume_checkpoint` names, checked against `TRAINING_STATE`; a UserError (see
    `cannot_resume`) when it cannot be read or lacks what a resume restores."""
    path = resume_checkpoint(output)
    if path is None:
        return None
    try:
        state = checkpoint.load(path)
    except UserError as error:
        raise UserError(cannot_resume(path, str(error))) from None
    found = problem(state, TRAINING_STATE)
    if found:
        raise UserError(cannot_resume(path, f"{path} is damaged ({found})"))
    return state



RUN_MARKERS = ("last.pt", "previous.pt", "config.yaml")



TRAINING_FILES = ("config.yaml", "last.pt", "previous.pt", "best.pt", "metrics.jsonl", "metrics.csv")  # it writes



def read_resume_state(output: Path, config: dict) -> dict | None:
    """The checkpoint a ``--resume`` continues, once it is known to be the same run.

    None when the run was killed before its first checkpoint (it starts again from the top).
    """
    state = load_resume_state(output)
    if state is not None and state["kind"] != config["kind"]:
        command = "train-supernet" if state["kind"] == "supernet" else "train"
        raise UserError(f"{output} holds a {state['kind']} training run; continue it with `spos {command} --resume`")
    saved_config = state.get("config") if state is not None else _saved_config(output)
    if saved_config is None:
        raise UserError(f"--resume: no usable checkpoint in {output} (last.pt / previous.pt); choose another "
                        "--output to start a new run")
    differences = resume_differences(saved_config, config)
    if state is not None and state["kind"] == "fixed":  # compared by what it is in `Trainer._resume`, not by
        differences = [d for d in differences if not d.startswith("arch ")]  # the path naming its file
    if differences:
        raise UserError(f"--resume: {output} was started with other settings ({'; '.join(differences)}); resume "
                        "with the same settings or start a new run in another --output")
    return state



def _saved_config(output: Path) -> dict | None:
    from spos.train.config import load_config

    return load_config(str(output / "config.yaml")) if (output / "config.yaml").is_file() else None
