import random

import pytest

from spos.errors import UserError
from spos.plots import plot_architecture, plot_training_curves
from spos.space.architecture import Architecture, sample_architecture
from spos.space.searchspace import get_space


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


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions draw, kept open instead of written."""
    import spos.plots
    import spos.search.plots

    figures = []

    def keep(fig, path):
        figures.append(fig)
        return path

    monkeypatch.setattr(spos.plots, "save_figure", keep)
    monkeypatch.setattr(spos.search.plots, "save_figure", keep)
    yield figures
    import matplotlib.pyplot as plt

    for fig in figures:
        plt.close(fig)


def _integers(values):
    return all(float(v).is_integer() for v in values)


def test_best_per_generation_draws_chance_and_the_supernet_with_whole_generations(drawn, tmp_path):
    from spos.search.plots import plot_best_per_generation

    plot_best_per_generation([0.14, 0.16, 0.178], tmp_path / "best.png", chance=0.1, supernet_top1=0.125)
    ax = drawn[0].axes[0]
    levels = {round(line.get_ydata()[0], 6) for line in ax.lines[1:]}
    assert levels == {10.0, 12.5}
    assert any("chance" in text.get_text() for text in ax.get_legend().get_texts())
    assert _integers(tick for tick in ax.get_xticks() if 1 <= tick <= 3)


def test_search_scatter_colour_bar_counts_whole_generations_from_1(drawn, tmp_path):
    from spos.search.plots import plot_search_scatter

    records = [{"flops": 1e6 * (i + 1), "score": 0.1 + 0.01 * i, "generation": i % 3} for i in range(9)]
    plot_search_scatter(records, "flops", tmp_path / "scatter.png")
    colour_bar = drawn[0].axes[1]
    ticks = [t for t in colour_bar.get_yticks() if 1 <= t <= 3]
    assert ticks and _integers(ticks) and drawn[0].axes[0].collections[0].get_array().min() == 1


def test_architecture_plot_numbers_stages_like_the_report(drawn, tmp_path):
    space = get_space("oneshot", input_size=32, num_classes=10, width_mult=0.25)
    arch = sample_architecture(space, random.Random(0))
    plot_architecture(arch, space, tmp_path / "arch.png")
    stages = {text.get_text().split("\n")[0] for text in drawn[0].axes[0].texts if text.get_text().startswith("stage")}
    described = {line.split("(")[1].split(",")[0] for line in arch.describe(space)}
    assert stages == described == {"stage 0", "stage 1", "stage 2", "stage 3"}
