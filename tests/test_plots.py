import random

import pytest

from spos.errors import UserError
from spos.plots import plot_architecture, plot_training_curves
from spos.space import Architecture, get_space, sample_architecture


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_architecture_plot(tmp_path):
    space = get_space("oneshot+", input_size=32, num_classes=10)
    arch = sample_architecture(space, random.Random(0))
    assert _is_png(plot_architecture(arch, space, tmp_path / "arch.png"))
    with pytest.raises(UserError):
        plot_architecture(Architecture((0,), (0,)), space, tmp_path / "bad.png")


def test_training_curves_plot(tmp_path):
    rows = [{"epoch": e, "train_loss": 2 / e, "val_top1": 0.2 * e} for e in range(1, 4)]
    path = plot_training_curves({"supernet": rows, "retrain": rows[:2]}, tmp_path / "sub" / "curves.png")
    assert _is_png(path)
