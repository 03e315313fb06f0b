"""Restarts without a flag typed: a worker group torchrun restarts, or a job SLURM requeued, resumes its run.

``torchrun --max-restarts N`` starts the whole worker group again when a rank dies, with the same command
line, so ``--resume`` is not on it; it sets ``TORCHELASTIC_RESTART_COUNT`` (0 on the first attempt). A SLURM
job requeued (``#SBATCH --requeue``: preempted, or ``scontrol requeue``) runs its batch script again with
``SLURM_RESTART_COUNT`` set. On such a restart a command whose output folder holds a run of its own kind
continues it, as ``--resume`` would (the same checks: another run's folder is refused); the first attempt
still refuses a folder that holds a run unless ``--resume`` is given, so a mistyped ``--output`` never
continues someone else's run by surprise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

RESTART_COUNTS = ("TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT")


def restart_count() -> int:
    """How many times the launcher restarted this work: torchrun's count, else SLURM's requeues, else 0."""
    for name in RESTART_COUNTS:
        text = os.environ.get(name, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return 0


def resumes_after_restart(output: str | Path, markers: tuple[str, ...]) -> bool:
    """Whether a command writing into ``output`` continues its run there without ``--resume``: the launcher
    restarted it (`restart_count` > 0) and ``output`` holds one of ``markers`` (a checkpoint, a history)."""
    count = restart_count()
    if not count or not any((Path(output) / marker).exists() for marker in markers):
        return False
    if int(os.environ.get("RANK", "0")) == 0:
        log.info(f"restart {count} (torchrun or SLURM): continuing the run in {output} as --resume does")
    return True
