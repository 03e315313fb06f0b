"""Trained networks on disk and on the Hub: checkpoints (`checkpoint`), model folders (`pretrained`), the Hugging
Face Hub (`hub`), model cards, official weights and file kinds.

`checkpoint.load` reads a model folder or ``hf://USER/NAME`` as it reads a checkpoint file, through readers
that `pretrained` and `hub` register with it (imported here, so any import of `spos.store` has them).
"""

from spos.store import hub, pretrained  # noqa: F401  (register their readers with spos.store.checkpoint)
