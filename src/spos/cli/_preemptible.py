"""Running a long command so that a scheduler's signal stops it cleanly (`spos.train.preemption`)."""

from __future__ import annotations

import sys


def run_preemptible(args) -> int:
    """``args.func(args)`` with SIGTERM, SIGUSR1 and SIGINT caught: at the command's next stop point it
    writes what a resume needs, prints one line (rank 0) saying how to continue, and exits
    `REQUEUE_EXIT_CODE`; every torchrun rank exits so, those that stopped without raising too."""
    from spos.train import distributed, preemption

    with preemption.stop_requests() as request:
        try:
            result = args.func(args)
        except preemption.Preempted as stop:
            if distributed.launcher_rank_and_world()[0] == 0:
                resume = preemption.resume_command(args.command_line, bool(getattr(args, "resume", False)))
                print(preemption.stop_line(args.command, request.signal_name, stop.where, resume,
                                           preemption.under_torchrun()), file=sys.stderr)
            return preemption.REQUEUE_EXIT_CODE
    if request.stopped:  # a torchrun rank whose rank 0 raised: it stopped at the same point
        return preemption.REQUEUE_EXIT_CODE
    return int(result or 0)


#: What gloo and NCCL say when a peer process died under them (a rank killed, a node lost).
LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "NCCL communicator was aborted")


def lost_rank_line(command: str, error: BaseException) -> str | None:
    """The one line of a torchrun rank whose peer died in a collective: not spos's bug to report, and what
    happens next (torchrun restarts the group if it may, which resumes on its own); None for anything else."""
    import os

    text = str(error)
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or not any(marker in text for marker in LOST_PEER):
        return None
    first = (text.strip().splitlines() or [type(error).__name__])[0][:160]
    return (f"spos {command}: another rank of this run stopped ({type(error).__name__}: {first}); torchrun "
            "--max-restarts N restarts the group, which resumes from the last checkpoint on its own")
