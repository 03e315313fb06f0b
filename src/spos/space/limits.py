"""The sizes spos refuses before building anything, stated in one place.

A space reaches spos from files other people wrote (a checkpoint, an architecture file, a space
YAML, a latency table) and from flags (``--width-mult``, ``--set space.width_mult``). A typo or a
crafted file (``stage_repeats`` of 1e7, a width multiplier of 1000) would otherwise allocate
gigabytes or compute with no end before anything failed. Each limit lies far above every
published one-shot space (the presets: 8-22 choice layers, 1-10 width choices, inputs of 32-224
pixels, supernets of 4-17M parameters), so no real space meets one, and low enough that a space
beyond it is refused in milliseconds, by the space's own check (`spos.space.searchspace.SearchSpace`).
"""

from __future__ import annotations

#: Choice layers in a space (the presets have 8 to 22).
MAX_CHOICE_LAYERS = 1_000
#: Candidate ops of one layer, and width choices of a space (the presets have at most 4 and 10).
MAX_CHOICES = 64
#: Input side in pixels (the presets run at 8 to 224).
MAX_INPUT_SIZE = 4_096
#: Parameters of a space's supernet, every candidate at its widest (4 GB of float32 weights, and 12
#: GB more to train them; the ImageNet oneshot supernet has 16M).
MAX_PARAMETERS = 1_000_000_000
#: ``--width-mult`` / ``space.width_mult`` (the tests and the demo use 0.25; 16 makes the oneshot
#: space's widest layer 16,384 channels, already beyond `MAX_PARAMETERS`).
MAX_WIDTH_MULT = 16.0
#: Seeds: numpy's generators take at most 32 bits, and spos derives its streams' seeds from them.
MAX_SEED = 2 ** 32 - 1
#: Candidates whose latency a search measures (rather than reads from a table) while it checks that
#: a latency limit can be met: each costs a timed network, so an impossible limit gives up early.
MEASURED_DRAWS = 20
