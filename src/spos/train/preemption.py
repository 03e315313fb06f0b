"""Stopping a run cleanly when a scheduler asks: SIGTERM, SIGUSR1 or SIGINT (issue #32, docs/cluster.md).

A scheduler that needs the machine back (SLURM at the time limit or for a job of higher priority,
Kubernetes draining a node, a person's Ctrl-C) signals the run and kills it a while later. The first signal
only raises a flag (`StopRequest`); the loops look at it at their stop points, where stopping loses nothing:
after an optimizer step (`after_training_step`: a mid-epoch checkpoint with the epoch's unfolded sums, so
the resumed run ends bit-identical), between two search candidates or two supernet paths, between two
stand-alone runs. There they raise `Preempted`, and the command prints one line saying how to continue and
exits with `REQUEUE_EXIT_CODE`.

Under torchrun every rank must stop at the same step, or the others would wait forever in the next
collective: `stop_agreed` adds up the ranks' flags (one small all-reduce per stop point) and every rank
stops when any was asked. A second signal exits at once (`os._exit`) without a checkpoint: the files are
all written atomically, so the last complete checkpoint is what a resume finds.

The handlers exist only while a command runs (`stop_requests`, entered by `spos.cli`), never at import: a
library user's own handlers stay theirs, and with none installed the stop points cost nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from spos.errors import UserError
from spos.train import distributed, elastic

#: The exit status of a run stopped by a signal after writing what it needs to continue: EX_TEMPFAIL of
#: sysexits.h, "a temporary failure; the user is invited to retry". Not 0, since the work is not done, and
#: not the 128 + N a shell reports for a process killed by signal N (what a second signal gives): a batch
#: script can tell "stopped with a checkpoint: requeue me" from "killed, or failed".
REQUEUE_EXIT_CODE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
#: A second signal within this many seconds of the first is the same request delivered twice (SLURM signals
#: every process of a job step, torchrun forwards the signal it got to its workers again), not a second one.
DUPLICATE_WINDOW_S = 1.0
#: Test-only hooks, read by `run_test_hooks`; never set them outside the test suite.
TEST_SIGNAL_AT_STEP = "SPOS_TEST_SIGNAL_AT_STEP"  # "K": at step (or search candidate) K, a real SIGTERM
TEST_SIGKILL_AT_STEP = "SPOS_TEST_SIGKILL_AT_STEP"  # "R:K": rank R SIGKILLs itself at step K, first attempt


class Preempted(Exception):
    """Raised at a stop point once the ranks agreed to stop; ``where`` says where, and what was kept."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class StopRequest:
    """The flag the first stop signal raises, and what a second one does (exit at once).

    ``clock`` and ``exit`` are the process's own (``time.monotonic``, ``os._exit``), given for the tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, exit: Callable[[int], None] = os._exit) -> None:
        self.clock, self.exit = clock, exit
        self.signal: int | None = None  # the first signal's number
        self.first_at = 0.0
        self.stopped = False  # the ranks agreed to stop (`stop_agreed`): the command exits REQUEUE_EXIT_CODE
        self.kept = False  # everything a resume needs is written: a second signal then exits REQUEUE_EXIT_CODE
        self.test_signalled = False  # `run_test_hooks` sent its signal (once a command)
        self.pid = os.getpid()  # a forked DataLoader worker inherits the handler: there it does nothing

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "no signal"

    def handle(self, signum: int, frame=None) -> None:
        """The signal handler: the first signal raises the flag, a second (past the duplicate window) exits."""
        if os.getpid() != self.pid:  # Ctrl-C reaches the loader's workers too: the run's process decides
            return
        now = self.clock()
        if self.signal is None:
            self.signal, self.first_at = signum, now
            _say(f"spos: {signal.Signals(signum).name}: stopping after the current step or candidate, with what a "
                 "resume needs; a second signal stops at once, without it\n")
            return
        if now - self.first_at < DUPLICATE_WINDOW_S:
            return
        self.exit(REQUEUE_EXIT_CODE if self.kept else 128 + signum)


def _say(text: str) -> None:
    """One line on stderr from rank 0 only (under torchrun each rank gets the signal); os.write, which a
    signal handler may call in the middle of any other write."""
    if distributed.launcher_rank_and_world()[0] == 0:
        os.write(2, text.encode())


_active: StopRequest | None = None


def active() -> StopRequest | None:
    """The request of the command running now, or None outside one (a library call: nothing is caught)."""
    return _active


@contextmanager
def stop_requests(request: StopRequest | None = None) -> Iterator[StopRequest]:
    """Inside, SIGTERM, SIGUSR1 and SIGINT raise ``request``'s flag; the previous handlers come back after.

    Off the main thread Python cannot install handlers: the request is then never raised."""
    global _active
    request = request or StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.signal(number, request.handle) for number in STOP_SIGNALS}
    outer, _active = _active, request
    try:
        yield request
    finally:
        _active = outer
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def stop_agreed() -> bool:
    """Whether to stop here: this process was asked, or, under torchrun, any rank was. A collective there
    (every rank calls it at the same stop point); nothing, and False, outside a command."""
    request = _active
    if request is None:
        return False
    agreed = request.requested
    if distributed.rank_and_world()[1] > 1:
        agreed = _any_rank(agreed)
    request.stopped = request.stopped or agreed
    return agreed


_flag_groups: list = []  # [(the default group, the group its flags travel in)]


def _any_rank(local: bool) -> bool:
    """The largest of the ranks' flags. Under NCCL through a gloo group of the same ranks, on the CPU: the
    flag's value is read at once, and reading a GPU tensor would wait for every kernel queued before it."""
    import torch.distributed as dist

    world = dist.group.WORLD
    if not _flag_groups or _flag_groups[0][0] is not world:
        group = dist.new_group(backend="gloo") if dist.get_backend() == "nccl" else None
        _flag_groups[:] = [(world, group)]
    flag = torch.tensor([int(local)], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_flag_groups[0][1])
    return bool(flag.item())


def raise_if_stop_agreed(where: str) -> None:
    """A stop point whose work is already on disk (a log line per candidate or path): stop here if asked."""
    if stop_agreed():
        stop_here(where)


def stop_here(where: str) -> None:
    """Stop now, once `stop_agreed` said so and what a resume needs is written."""
    if _active is not None:
        _active.kept = True
    raise Preempted(where)


# -- the training loop's stop point ------------------------------------------------------------------


def after_training_step(trainer, tally) -> None:
    """After each optimizer step of `spos.train.loop.Trainer`: stop there if asked, with a checkpoint.

    The checkpoint is the mid-epoch one (``train.checkpoint_every_steps``), holding besides the folded sums
    each rank's sums since the last fold (`paused_sums`), so the resumed run folds at the same steps as an
    uninterrupted one and its float sums, metrics and history come out bit-identical."""
    run_test_hooks(trainer.step, trainer.rank)
    if not stop_agreed():
        return
    trainer.epoch_sums = paused_sums(tally, trainer.rank, trainer.world)
    trainer.save()
    distributed.barrier()  # no rank leaves (torchrun would then signal rank 0 again) before last.pt is whole
    _active.kept = True
    raise Preempted(f"after step {trainer.step} (checkpoint {trainer.output / 'last.pt'})")


def paused_sums(tally, rank: int, world: int) -> dict:
    """The epoch's sums as a mid-epoch checkpoint holds them, with ``pending``: row r is rank r's loss,
    correct and seen since the last fold (float64, exact), which `resumed_tally` gives back to rank r."""
    now = time.perf_counter()
    tally.seconds += now - tally._since
    tally._since = now
    local = torch.stack((tally._loss.double(), tally._correct.double(),
                         torch.tensor(float(tally._seen), dtype=torch.float64, device=tally._loss.device)))
    rows = torch.zeros(world, 3, dtype=torch.float64, device=local.device)
    rows[rank] = local
    return {**tally.state(), "pending": distributed.all_reduce_sum(rows).cpu()}


def resumed_tally(tally, saved: dict | None, rank: int, world: int):
    """``tally`` (an `EpochTally` built from ``saved``) with this rank's unfolded sums back, when ``saved``
    was written at a stop (`paused_sums`). Resumed with another world size, the rows are folded in at once:
    the numbers stay right, only their float rounding may differ."""
    pending = (saved or {}).get("pending")
    if pending is None:
        return tally
    if not isinstance(pending, torch.Tensor) or pending.dim() != 2 or pending.shape[1] != 3:
        raise UserError(f"--resume: the checkpoint's epoch_sums.pending is not a table of 3 columns "
                        f"({type(pending).__name__}); start a new run in another --output")
    if pending.shape[0] != world:
        tally.totals += pending.sum(0)
        return tally
    loss, correct, seen = pending[rank]
    tally._loss = loss.to(tally.device).clone()
    tally._correct = correct.to(torch.int64).to(tally.device)
    tally._seen = int(seen)
    return tally


# -- test-only hooks ---------------------------------------------------------------------------------

def run_test_hooks(count: int, rank: int) -> None:
    """Test-only (the env vars `TEST_SIGNAL_AT_STEP`, `TEST_SIGKILL_AT_STEP`), first attempt only: at step
    (or candidate) ``count`` >= K, send a real SIGTERM, or SIGKILL this rank, as a scheduler or a crash would,
    at a point the test knows. Under torchrun the SIGTERM goes to torchrun, which forwards it to every rank."""
    if not (os.environ.get(TEST_SIGNAL_AT_STEP) or os.environ.get(TEST_SIGKILL_AT_STEP)) or elastic.restart_count():
        return
    kill = os.environ.get(TEST_SIGKILL_AT_STEP)
    if kill:
        kill_rank, kill_step = (int(part) for part in kill.split(":"))
        if rank == kill_rank and count >= kill_step:
            os.kill(os.getpid(), signal.SIGKILL)
    at = os.environ.get(TEST_SIGNAL_AT_STEP)
    if at and count >= int(at) and rank == 0 and _active is not None and not _active.test_signalled:
        _active.test_signalled = True
        os.kill(os.getppid() if under_torchrun() else os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 60
        while not _active.requested and time.monotonic() < deadline:  # torchrun's forwarded copy
            time.sleep(0.01)


# -- the command's last line ----------------------------------------------------------------------------


def resume_command(command_line: list[str], resume_given: bool) -> str:
    """The command that continues the run: this one, with ``--resume`` added when it was not given."""
    import shlex

    words = ["spos", *command_line, *([] if resume_given else ["--resume"])]
    return shlex.join(words)


def stop_line(command: str, signal_name: str, where: str, resume: str, under_torchrun: bool = False) -> str:
    """The one line a stopped command prints (docs/cluster.md quotes it)."""
    launcher = " (under the same torchrun options)" if under_torchrun else ""
    return f"spos {command}: stopped by {signal_name} {where}; continue with{launcher}: {resume}"


def under_torchrun() -> bool:
    """Whether torchrun started this process (it names its run in the environment)."""
    return "TORCHELASTIC_RUN_ID" in os.environ
