"""A search's history.jsonl: one line per scored candidate, flushed as it goes, read back with damaged or cut lines dropped (and rewritten clean) so a resume scores nothing twice and measures again what it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

from spos.io.schema import MayBeMissing, damaged_lines_text, read_jsonl
from spos.search.engine import log


class HistoryWriter:
    """JSON lines, flushed and fsynced per record: a kill loses at most the record being written.
    Appended through `spos.io.files.AppendLog`, which never follows a planted link."""

    def __init__(self, path: str | Path) -> None:
        from spos.io.files import AppendLog

        self.path = Path(path)
        self._log = AppendLog(self.path)

    def write(self, record: dict) -> None:
        self._log.write_line(json.dumps(record))

    def close(self) -> None:
        self._log.close()



# What a history line must hold to be used: anything else is dropped and scored again.
HISTORY_RECORD = {"genes": [int], "score": float, "generation": MayBeMissing(int)}



def read_history(path: str | Path) -> list[dict]:
    """Records of a history file; damaged lines are dropped and scored again (`read_log`)."""
    return read_log(path, HISTORY_RECORD, "the dropped ones are scored again")



def read_log(path: str | Path, schema, dropped: str) -> list[dict]:
    """Records of a JSON-lines log a resume appends to. Damaged lines (a kill mid-write, a disk error, a
    record of the wrong shape) are dropped and counted in a warning ending in ``dropped`` (what becomes
    of them), the good records after them kept, and the file is rewritten without them so that
    appending goes on from a clean line."""
    from spos.io.files import write_atomic

    path = Path(path)
    records, damaged, good_lines = read_jsonl(path, schema)
    if damaged:
        log.warning(damaged_lines_text(path, damaged, len(records), dropped))
    if damaged or (good_lines and b"".join(good_lines) != path.read_bytes()):
        write_atomic(path, lambda handle: handle.write(b"".join(good_lines)))
    return records
