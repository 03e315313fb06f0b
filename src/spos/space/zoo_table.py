"""The zoo table `spos zoo` prints (and the README shows): each named architecture's FLOPs and params,
counted here, beside the figures its source reports."""

from __future__ import annotations

from spos.space.flops import count
from spos.space.zoo import ZOO


def zoo_rows() -> list[dict]:
    rows = []
    for name, entry in ZOO.items():
        space = entry.space()
        arch = entry.architecture(space)
        cost = count(space, arch)
        reported = entry.reported
        rows.append({
            "name": name, "space": entry.space_name, "arch": str(arch),
            "flops": cost.macs, "params": cost.params,
            "reported_flops": reported.get("flops"), "reported_params": reported.get("params"),
            "reported_top1": reported.get("top1"), "source": reported.get("source", ""),
            "description": entry.description,
        })
    return rows


def _millions(value, digits: int) -> str:
    return "-" if value is None else f"{value / 1e6:.{digits}f}M"


def zoo_table(rows: list[dict], markdown: bool = False) -> str:
    header = ["name", "space", "FLOPs", "reported", "params", "reported", "top-1 reported", "source"]
    body = [[r["name"], r["space"], _millions(r["flops"], 1), _millions(r["reported_flops"], 0),
             _millions(r["params"], 2), _millions(r["reported_params"], 2),
             "-" if r["reported_top1"] is None else f"{r['reported_top1']:.2f}%", r["source"] or "-"]
            for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in body])
