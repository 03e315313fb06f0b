"""A rank job's output folder: its files, the schema each record is checked against where a resume reads it back, and the settings a resume must match."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from spos.errors import UserError
from spos.io import files
from spos.io.schema import MayBeMissing, damaged_lines_text, read_json, read_jsonl
from spos.space.architecture import Architecture
from spos.train import preemption

if TYPE_CHECKING:
    from spos.rank.job import RankJob

log = logging.getLogger(__name__)


SETTINGS = "settings.json"



STANDALONE_LOG = "standalone.jsonl"



SCORES_LOG = "supernet_scores.jsonl"



PROXIES_LOG = "proxies.jsonl"



# What a resume reads back, each checked where it is read (`spos.io.schema`).
SETTINGS_RECORD = {"job": dict, "architectures": [str]}



SCORE_ROW = {"arch": str, "supernet_top1": float, "supernet_loss": MayBeMissing(float)}  # rows of SCORES_LOG



STANDALONE_ROW = {"index": int, "seed": int, "top1": float}  # rows of the stand-alone logs



PROXY_ROW = {"arch": str, "proxy": str, "value": float}  # rows of PROXIES_LOG (NASWOT's value may be -inf)



# The files rank 0 writes at the top of the output folder, for `files.remove_stale_temps`.
RANK_FILES = (SETTINGS, STANDALONE_LOG, SCORES_LOG, PROXIES_LOG, "rank.json", "rank_scatter.png")



def _read_jsonl(path: Path, schema, quiet: bool = False) -> list[dict]:
    """The rows of a log that fit ``schema``; a line cut by a kill or damaged is dropped (with a warning
    unless ``quiet``) and that result measured again."""
    if not path.is_file():
        return []
    rows, damaged, _ = read_jsonl(path, schema)
    if damaged and not quiet:
        log.warning(damaged_lines_text(path, damaged, len(rows), "the dropped results are measured again"))
    return rows



def _append_jsonl(path: Path, row: dict) -> None:
    with files.AppendLog(path) as appended:
        appended.write_line(json.dumps(row))



def _settings(job: RankJob, archs: list[Architecture]) -> dict:
    """What defines the job: its options, with every input file by what it holds (`input_fingerprint`), so a
    resume from another working directory matches and a replaced supernet does not."""
    from spos.search.run import input_fingerprint
    from spos.store.pretrained import weights_file

    asked = {k: v for k, v in asdict(job).items()
             if k not in ("output", "resume", "progress", "device", "split_seed", "score", "flops_windows",
                          "benchmark_file", "supernet_holdout", "proxies")  # score, windows, proxies: a resume adds
             and (k, v) not in (("holdout_from", "train"), ("allow_trained_images", False))}  # as jobs saved before
    asked.update({k: input_fingerprint(asked[k]) for k in ("arch_file", "ground_truth", "standalone", "data_root")})
    asked["supernet"] = input_fingerprint(weights_file(job.supernet))  # a model folder is known by its weights
    return {"job": asked, "architectures": [str(a) for a in archs]}



def _saved_architectures(path: Path) -> list[Architecture]:
    saved = read_json(path, SETTINGS_RECORD, "start the rank job again in another --output")
    try:
        return [Architecture.parse(text) for text in saved["architectures"]]
    except UserError as error:
        raise UserError(f"{path} is damaged ({error}); start the rank job again in another --output") from None



def prepare_output(job: RankJob, archs: list[Architecture]) -> list[Architecture]:
    """A new folder gets the settings; ``--resume`` continues only the job that made the folder.

    Under torchrun only rank 0 checks and writes; the other ranks wait for its settings file."""
    from spos.train.distributed import launcher_rank_and_world

    output = Path(job.output)
    saved = output / SETTINGS
    settings = _settings(job, archs)
    if launcher_rank_and_world()[0] != 0:
        _wait_until(saved.is_file, f"waiting for rank 0 to write {saved}", poll=0.5)
        return _saved_architectures(saved)
    if job.resume:
        if not saved.is_file():
            raise UserError(f"--resume: {output} holds no rank job ({SETTINGS} is missing)")
        previous = read_json(saved, SETTINGS_RECORD, "start the rank job again in another --output")
        changed = [k for k, v in settings["job"].items() if previous["job"].get(k) != v]
        if changed:
            raise UserError(f"--resume: {output} was started with other settings ({', '.join(changed)}); "
                            "repeat the first command's options or choose another --output")
        archs = _saved_architectures(saved)
    output.mkdir(parents=True, exist_ok=True)
    files.remove_stale_temps(output, RANK_FILES)
    if not job.resume:
        files.write_text_atomic(json.dumps(settings, indent=2) + "\n", saved)
    return archs


def _wait_until(condition, message: str, poll: float = 5.0) -> None:
    """Poll until ``condition()``: torchrun ends every rank when one fails, so this cannot wait forever on a
    dead rank."""
    if not condition():
        log.info(message)
    while not condition():
        preemption.raise_if_stop_agreed("while it waited for another rank")  # a world of one: no collective
        time.sleep(poll)
