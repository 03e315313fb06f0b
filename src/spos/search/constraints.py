"""A search's limits as engine constraints: analytic FLOPs and params, latency from a table or measured here once per architecture (every timing recorded, so a resume reuses them and replays the same stream), and the map from the engine's genes to architectures."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from spos.errors import UserError
from spos.io import files
from spos.io.schema import FINITE, fits
from spos.space.architecture import Architecture, canonical_mode
from spos.space.flops import cost_table
from spos.space.searchspace import SearchSpace

if TYPE_CHECKING:
    from spos.search.run import SearchJob

log = logging.getLogger(__name__)


class GeneMap:
    """Maps the engine's genes to architectures: block-only search fixes channels at scale 1.0,
    channel-only search fixes blocks at 3x3, and the engine sees one choice for fixed genes."""

    def __init__(self, space: SearchSpace, mode: str) -> None:
        self.space, self.mode = space, canonical_mode(mode)
        n = space.num_layers
        self.counts = (list(space.op_counts) if self.mode != "channel" else [1] * n) + \
            [space.num_channels if self.mode != "block" else 1] * n

    def arch(self, genes) -> Architecture:
        n = self.space.num_layers
        blocks = genes[:n] if self.mode != "channel" else (0,) * n
        channels = genes[n:] if self.mode != "block" else (self.space.default_channel,) * n
        return Architecture(tuple(blocks), tuple(channels))

    def full_genes(self, genes) -> tuple[int, ...]:
        return self.arch(genes).genes

    def genes_of(self, arch: Architecture) -> tuple[int, ...]:
        """The engine's genes of ``arch`` (the inverse of `arch` on the genes this mode searches)."""
        n = self.space.num_layers
        return ((arch.blocks if self.mode != "channel" else (0,) * n) +
                (arch.channels if self.mode != "block" else (0,) * n))

    def canonical(self):
        """The engine's ``canonical``: genes of twins (`spos.space.canonical`) to their representative's, so equal
        networks are one candidate; None in a space without twins."""
        from spos.space.canonical import canonicalizer

        canonicalize = canonicalizer(self.space)
        return None if canonicalize.trivial else (lambda genes: self.genes_of(canonicalize(self.arch(genes))))

    def scoring(self, scorer):
        """The engine's ``score_fn`` and ``score_many`` for an architecture scorer, through `arch`."""
        return (lambda genes: scorer(self.arch(genes)),
                lambda candidates: scorer.score_many([self.arch(genes) for genes in candidates]))



LATENCY_LOG = "latencies.jsonl"



#: A line of latencies.jsonl, and the part of a history.jsonl record a resume reads its latency from.
LATENCY_RECORD = {"arch": str, "latency": FINITE}



class MeasuredLatencies:
    """Each architecture's latency, timed once on this device and kept: every timing goes into
    OUTPUT/latencies.jsonl (`record_into`), those of candidates refused for their latency included,
    because those refusals decide what the random stream draws next. A resume starts from the killed
    run's timings (`recorded_latencies`), so it draws what that run drew however busy the machine is
    now, and times only architectures that run never timed."""

    def __init__(self, space: SearchSpace, device, recorded: dict[str, float]) -> None:
        from spos.deploy.latency import measure_model

        self.space, self.device, self.measure_model = space, str(device), measure_model
        self.timings = dict(recorded)  # by the architecture's text form, as history.jsonl writes it
        self.unwritten: list[str] = []  # timed before the output folder is ready (the feasibility check)
        self.log = None

    def __call__(self, arch: Architecture) -> float:
        key = str(arch)
        if key not in self.timings:
            from spos.nn.fixed import FixedNet

            net = FixedNet(self.space, arch)
            stats = self.measure_model(net, self.space.layout.input_shape, warmup=3, repeats=10, device=self.device)
            self.timings[key] = stats.median_ms
            self.unwritten.append(key)
            self._write_unwritten()
        return self.timings[key]

    def record_into(self, path: Path) -> None:
        """Append every timing, those taken so far first, to ``path`` (after job.json is written, so a
        folder holding latencies.jsonl always holds the job they belong to)."""
        self.log = files.AppendLog(path)
        self._write_unwritten()

    def _write_unwritten(self) -> None:
        if self.log is not None:
            for key in self.unwritten:
                self.log.write_line(json.dumps({"arch": key, "latency": self.timings[key]}))
            self.unwritten.clear()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()



def recorded_latencies(output: Path, history: list[dict]) -> dict[str, float]:
    """The latencies a killed search measured, by architecture: those of its scored candidates
    (history.jsonl) and every one in latencies.jsonl (refused candidates' too); damaged lines of the
    latter are dropped, and their architectures timed again."""
    from spos.search.history import read_log

    timings = {record["arch"]: float(record["latency"]) for record in history if fits(record, LATENCY_RECORD)}
    path = output / LATENCY_LOG
    if path.is_file():
        records = read_log(path, LATENCY_RECORD, "their architectures are timed again")
        timings.update({record["arch"]: float(record["latency"]) for record in records})
    if timings:
        log.info(f"resuming with {len(timings)} latencies measured before the resume: those are not timed again")
    return timings



def build_measures(job: SearchJob, space: SearchSpace, genes_to_arch, device,
                   latencies: MeasuredLatencies | None = None) -> dict:
    """Cheap per-candidate measures: analytic FLOPs and params, latency from a table or, where the job
    needs latency and has no table, from ``latencies`` (one with no timings when None)."""
    table = cost_table(space)
    measures = {"flops": lambda g: float(table.macs(genes_to_arch(g))),
                "params": lambda g: float(table.params(genes_to_arch(g)))}
    wants_latency = job.latency_max is not None or "latency" in job.objectives or job.latency_table
    if wants_latency:
        if job.latency_table:
            from spos.deploy.latency import load_latency_table

            latency_table = load_latency_table(job.latency_table)
            differences = latency_table.differences(space)
            if differences:
                raise UserError(f"latency table {job.latency_table} was built for another space than this supernet's "
                                f"({'; '.join(differences)}); build one for it with `spos latency table --supernet "
                                f"{job.supernet} --output FILE`")
            error = latency_table.error_text()
            (log.warning if error.startswith("warning") else log.info)(f"latency table {job.latency_table}: {error}")
            measures["latency"] = lambda g: float(latency_table.predict(genes_to_arch(g)))
        else:
            timed = latencies if latencies is not None else MeasuredLatencies(space, device, {})
            measures["latency"] = lambda g: timed(genes_to_arch(g))
    return measures



def measure_once(measures: dict):
    """``measured(genes) -> {name: value}`` of every measure, computed once per candidate: the history,
    the front files and the plots read the same figures."""
    cache: dict = {}

    def measured(genes) -> dict:
        key = tuple(genes)
        if key not in cache:
            cache[key] = {name: measure(genes) for name, measure in measures.items()}
        return cache[key]

    return measured



def build_constraints(job: SearchJob, measures: dict) -> list:
    from spos.search.engine import Constraint

    constraints = []
    if job.flops_max is not None:
        constraints.append(Constraint("flops", measures["flops"], job.flops_max))
    if job.flops_min is not None:
        constraints.append(Constraint("flops_min", lambda g: -measures["flops"](g), -job.flops_min))
    if job.params_max is not None:
        constraints.append(Constraint("params", measures["params"], job.params_max))
    if job.latency_max is not None:
        constraints.append(Constraint("latency", measures["latency"], job.latency_max, measured=not job.latency_table))
    return constraints
