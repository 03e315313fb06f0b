import random

import pytest
import torch

from spos.space import get_space


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def tiny_space():
    """The oneshot space at 32x32 input with every width quartered: same 20 choice layers."""
    return get_space("oneshot", input_size=32, num_classes=10, width_mult=0.25)
