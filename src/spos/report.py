"""Moved to `spos.zoo_table` (what it holds): this name stays only until ``cli/models.py`` imports from there."""

from spos.zoo_table import zoo_rows, zoo_table

__all__ = ["zoo_rows", "zoo_table"]
