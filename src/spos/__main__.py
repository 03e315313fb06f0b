"""`python -m spos` (and `torchrun -m spos`) runs the command line."""

from spos.cli import main

raise SystemExit(main())
