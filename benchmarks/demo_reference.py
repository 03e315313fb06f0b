"""Write the stand-alone reference `spos demo` checks its supernet's ranking against.

Reads the stand-alone runs `benchmarks/ranking.py --standalone-only` trained (OUTPUT/standalone/
standalone*.jsonl: final val top-1 per architecture and seed) and writes them in the format
`spos rank --ground-truth` reads: a JSON list of ``{"arch", "accuracy", "runs", "flops"}``, sorted
by FLOPs. ``accuracy`` is the median of the runs: at 10 epochs of digits-retrain a seed now and then
starts slowly (two of 36 runs ended at 65-69% where the other seeds of the same architecture
reached 91-95%), and the median keeps one such run from moving an architecture by 8 points.

    python benchmarks/ranking.py --output OUT --standalone-epochs 10 --seeds 3 --standalone-only
    python benchmarks/demo_reference.py OUT src/spos/demo/references/digits-oneshot.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from spos.data.conventions import dataset_info
from spos.space.architecture import Architecture
from spos.space.flops import cost_table
from spos.train.config import load_config
from spos.train.setup import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the --output folder of benchmarks/ranking.py --standalone-only")
    parser.add_argument("reference", type=Path, help="the reference file to write")
    args = parser.parse_args()
    rows = [json.loads(line) for path in sorted((args.runs / "standalone").glob("standalone*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
    runs: dict[str, dict[int, float]] = {}
    for row in rows:
        runs.setdefault(row["arch"], {})[row["seed"]] = row["top1"]
    table = cost_table(build_model(load_config("digits-supernet"), dataset_info("digits")).space)
    reference = sorted(({"arch": arch, "accuracy": statistics.median(by_seed.values()),
                         "runs": [by_seed[seed] for seed in sorted(by_seed)],
                         "flops": table.macs(Architecture.parse(arch))} for arch, by_seed in runs.items()),
                       key=lambda row: row["flops"])
    args.reference.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"{len(reference)} architectures, {min(len(r['runs']) for r in reference)}-"
          f"{max(len(r['runs']) for r in reference)} runs each, top-1 "
          f"{min(r['accuracy'] for r in reference):.4f}-{max(r['accuracy'] for r in reference):.4f}: {args.reference}")


if __name__ == "__main__":
    main()
