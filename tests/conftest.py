import importlib.util
import random
import re
from pathlib import Path

import pytest
import torch

from spos.space.searchspace import get_space


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def tiny_space():
    """The oneshot space at 32x32 input with every width quartered: same 20 choice layers."""
    return get_space("oneshot", input_size=32, num_classes=10, width_mult=0.25)


@pytest.fixture(scope="session")
def digits_space():
    """The oneshot space at digits' size (8x8 grey, 10 classes) with every width quartered."""
    return get_space("oneshot", input_size=8, num_classes=10, in_channels=1, width_mult=0.25)


@pytest.fixture(scope="session")
def digits_supernet_file(tmp_path_factory, digits_space, digits_run):
    """An untrained supernet checkpoint of `digits_space`, recording the config of a digits run (so it may be
    searched and ranked on the images that run held out), for commands that only read one."""
    from spos.nn.supernet import SuperNet
    from spos.store import checkpoint

    path = tmp_path_factory.mktemp("digits-supernet") / "supernet.pt"
    return checkpoint.save_atomic(checkpoint.supernet_payload(SuperNet(digits_space), config=digits_run), path)


@pytest.fixture(scope="session")
def digits_run():
    """What a spos digits supernet run records in its checkpoint's config: its data, hold-out and seed, so
    search and rank score it on the images it never trained on (a bare supernet records nothing)."""
    return {"data": {"name": "digits", "holdout": 0.2}, "train": {"seed": 0}}


def load_benchmark_script(name: str):
    """benchmarks/<name>.py imported as a module, so its functions can be tested on tiny settings."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doc_block(doc: str, language: str, first_line: str) -> str:
    """The fenced ``language`` block of the repository's ``doc`` (e.g. "README.md") that starts with
    ``first_line``: the examples the documents show are the ones the tests run."""
    text = (Path(__file__).parents[1] / doc).read_text()
    for block in re.findall(rf"```{language}\n(.*?)```", text, re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"{doc} has no {language} block starting {first_line!r}")
