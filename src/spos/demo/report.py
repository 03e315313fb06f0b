"""The demo's report: its summary numbers, the ranking headline and what it can and cannot show, the plots, and report.md with every stage's time, files and the commands that redo it."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from spos.space.flops import cost_table


def _standard_error(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))



def summarise(settings, output, space, supernet_run, search, limit, best, ranking, retrained, exported,
              times, *, val_images: int) -> dict:
    table = cost_table(space)
    return {
        "settings": asdict(settings),
        "space": {"name": space.name, "input_size": space.input_size, "in_channels": space.in_channels,
                  "num_classes": space.num_classes, "stage_widths": list(space.stage_widths)},
        "val_images": val_images,
        "supernet": {"epochs": len(supernet_run.history), "final_val_top1": supernet_run.last.get("val_top1"),
                     "val_paths_top1": supernet_run.last.get("val_paths_top1"),
                     "checkpoint": str(supernet_run.output / "last.pt")},
        "search": {"flops_max": limit, "scored": search["scored"], "score": search.get("score", "top1"),
                   "best_holdout_top1": search["best"]["accuracy"],
                   "best_holdout_loss": search["best"].get("holdout_loss"), "folder": str(Path(output) / "search")},
        "ranking": ranking,
        "best": {"arch": str(best), "flops": table.macs(best), "params": table.params(best),
                 "best_val_top1": retrained.best_top1, "final_val_top1": retrained.last.get("val_top1"),
                 "epochs": len(retrained.history), "checkpoint": str(retrained.output / "best.pt"),
                 "describe": best.describe(space)},
        "onnx": {"path": str(exported.path), "max_abs_diff": exported.max_abs_diff, "weights": "raw"},
        "seconds": asdict(times) | {"total": times.total},
        "torch_threads": torch.get_num_threads(),
    }



def write_plots(output: Path, space, supernet_run, retrained, best) -> None:
    from spos.plots import plot_architecture, plot_training_curves

    plot_training_curves({"supernet (mean of sampled paths)": supernet_run.history,
                          "searched, retrained": retrained.history}, output / "training_curves.png")
    plot_architecture(best, space, output / "best_architecture.png", title=f"searched: {best}")



def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"



#: What `benchmarks/ranking.py` measured for this demo's recipe (on digits: 204 steps of `digits-supernet`,
#: entangled kernels with aligned choices; candidates scored by hold-out cross-entropy, as the demo's search
#: does): Kendall tau of supernet path score against stand-alone top-1 over 12 architectures, per supernet
#: seed (benchmarks/README.md). A demo on digits also checks its own supernet against a shipped reference
#: (`REFERENCES`); these are the wider measurements behind it, cited in every report.
MEASURED_RANKING = {
    ("digits", "oneshot"): "scored by hold-out cross-entropy, Kendall tau 0.58, 0.30, 0.76, 0.61, 0.79, 0.52, 0.48, "
                           "0.67 and 0.70 for nine supernet seeds (mean 0.60; scored by top-1, mean 0.48) against "
                           "10-epoch stand-alone runs of 12 architectures (6 seeds each, two of which agree with "
                           "each other at only 0.28 on average), though FLOPs alone ranks them at 0.58",
    ("digits", "mbv2-macro-cifar"): "scored by hold-out cross-entropy, Kendall tau 0.58 [0.15, 0.93], 0.55 [0.12, "
                                    "0.93] and 0.58 [0.08, 0.97] for three supernet seeds (scored by top-1: 0.65, "
                                    "0.70, 0.55), against 0.58 for FLOPs alone",
    ("cifar10", "mbv2-macro-cifar"): "on the real CIFAR-10 subset, scored by hold-out cross-entropy, Kendall tau 0.79 "
                                     "[0.51, 1.00] and 0.88 [0.67, 1.00] for two supernet seeds (scored by top-1: "
                                     "0.74, 0.87) with the 30 supernet epochs of --budget 1, against 40-epoch "
                                     "stand-alone runs of 12 architectures; FLOPs alone ranks them at 0.82",
}



def measured_ranking(data: str, space_name: str) -> str:
    """One sentence: how well this demo's supernet recipe was measured to rank architectures."""
    text = MEASURED_RANKING.get((data, space_name))
    if text is None:
        return (f"How well this recipe ranks architectures has not been measured on {data} in the {space_name} "
                "space (benchmarks/ranking.py measures it).")
    return f"Measured for this recipe on {data} in the {space_name} space (benchmarks/README.md): {text}."



def _score_name(score: str) -> str:
    return "by cross-entropy" if score == "loss" else "by top-1"



def _loss_text(loss: float | None) -> str:
    return "" if loss is None else f" (cross-entropy {loss:.3f}, the score it was chosen by)"



def ranking_headline(ranking: dict | None, data: str, space_name: str) -> str:
    """The report's first claim: how this run's supernet ranked the reference architectures, or, with no
    reference shipped for this data and space, what was measured elsewhere."""
    if ranking is None:
        return (f"This run does not check its supernet's ranking: no stand-alone reference is shipped for {data} in "
                f"the {space_name} space. {measured_ranking(data, space_name)}")
    tau, (right, pairs) = ranking["kendall_tau"], ranking["pairs_in_order"]
    claim = ("**The supernet orders architectures of different sizes as training each alone does more often than "
             "chance would.**" if right > pairs - right else "**This supernet did not order architectures of "
             "different sizes better than chance.**")
    return (f"{claim} Scored as the search scores candidates ({_score_name(ranking['score'])}, with inherited "
            f"weights), the {ranking['n']} reference architectures ({ranking['flops'][0] / 1e6:.2f}-"
            f"{ranking['flops'][1] / 1e6:.2f}M FLOPs) come in the order of their stand-alone top-1 "
            f"({_pct(ranking['standalone_top1'][0])}-{_pct(ranking['standalone_top1'][1])}) in {right} of {pairs} "
            f"pairs, where chance gets half: Kendall tau {_estimate(tau)} (a 95% bootstrap interval, wide for "
            f"{ranking['n']} architectures). Counting their FLOPs gives {_estimate(ranking['flops_kendall_tau'])}; over nine "
            f"supernet seeds measured before, the supernet ranked about as well as FLOPs, not better. The "
            f"reference: {ranking['measured']}.")



def ranking_line(summary: dict) -> str:
    """The ranking check in one line, as the command prints it."""
    ranking = summary["ranking"]
    if ranking is None:
        return measured_ranking(summary["settings"]["data"], summary["space"]["name"])
    return (f"this supernet ranks {ranking['n']} reference architectures at Kendall tau "
            f"{_estimate(ranking['kendall_tau'])} against their stand-alone top-1 (their FLOPs: "
            f"{ranking['flops_kendall_tau']['value']:.2f})")



def _estimate(value: dict) -> str:
    interval = "" if value.get("low") is None else f" [{value['low']:.2f}, {value['high']:.2f}]"
    return f"{value['value']:.2f}{interval}"



#: What the demo shows on digits, and what it cannot; the first sentence a report says after its claim.
SCOPE = ("What this demo proves on digits: the whole pipeline runs, and a supernet trained in a minute or two ranks "
         "architectures spread over FLOPs better than chance. What it cannot: that its search picks a better network "
         "than a random one of the same FLOPs; on 360 validation images such architectures differ by less than "
         "retraining noise, and among them no ranking measured on digits beats chance (benchmarks/README.md).")



def _similar_flops(summary: dict) -> str:
    """The reference architectures of about the retrained network's FLOPs, trained alone the same way."""
    ranking, best = summary["ranking"], summary["best"]
    if ranking is None or best["epochs"] != ranking["epochs"]:  # another budget: not comparable
        return ""
    near = [r["standalone_top1"] for r in ranking["rows"] if abs(r["flops"] - best["flops"]) <= 0.2 * best["flops"]]
    if not near:
        return ""
    return (f" For comparison, the {len(near)} reference architectures within 20% of its FLOPs reached "
            f"{_pct(min(near))}-{_pct(max(near))} trained alone the same way (mean of their seeds).")



def render_report(summary: dict) -> str:
    s, best = summary["settings"], summary["best"]
    n, secs = summary["val_images"], summary["seconds"]
    noise = _standard_error(best["best_val_top1"], n)
    lines = [
        "# spos demo report", "",
        f"One-shot NAS end to end on `{s['data']}` ({summary['space']['input_size']}x{summary['space']['input_size']}"
        f" images, {summary['space']['num_classes']} classes), in {secs['total']:.0f} s on "
        f"{summary['torch_threads']} CPU threads.", "",
        ranking_headline(summary["ranking"], s["data"], summary["space"]["name"]), "",
        SCOPE if s["data"] == "digits" else "", "",
        *_stage_table(summary), "",
        "## The searched architecture", "",
        f"`{best['arch']}` (block choices / channel choices, as every spos command takes it): "
        f"{best['flops'] / 1e6:.3f}M FLOPs, {best['params'] / 1e6:.3f}M params. With the supernet's weights it scored "
        f"{_pct(summary['search']['best_holdout_top1'])} top-1{_loss_text(summary['search'].get('best_holdout_loss'))}"
        f" on the hold-out split; trained from scratch it reached {_pct(best['best_val_top1'])} val top-1 at its best "
        f"epoch ({_pct(best['final_val_top1'])} at the last; one run, standard error {100 * noise:.1f} points on {n} "
        f"images).{_similar_flops(summary)}", "",
        f"The supernet's mean top-1 over its validation paths at the end was {_pct(summary['supernet']['final_val_top1'])}"
        f" (chance: {_pct(1 / summary['space']['num_classes'])}).", "",
        f"**Read this before trusting the ranking.** {measured_ranking(s['data'], summary['space']['name'])} "
        "A supernet that samples a different block in each layer at every step needs many steps before its "
        "shared weights rank architectures: the paper trains 150,000 ImageNet steps. Entangled kernels with aligned "
        "choices (`digits-supernet`) let a demo-sized run (a few hundred steps) learn, but in every space measured "
        "the supernet ranks architectures about as well as counting their FLOPs does, not better, and among "
        "architectures of equal FLOPs no ranking measured on digits beats chance. Train the supernet on real data "
        "with the README's commands for a ranking worth acting on.", "",
        "![searched architecture](best_architecture.png)", "",
        *[f"- {line}" for line in best["describe"]], "",
        "## Plots", "",
        *([f"![supernet score against stand-alone accuracy]({summary['ranking']['scatter']})", ""]
          if summary["ranking"] else []),
        "![training curves](training_curves.png)", "",
        "![search scatter with the Pareto front](search/search_scatter.png)", "",
        "![best hold-out score per generation](search/best_per_generation.png)", "",
        *_files_and_commands(summary),
    ]
    return "\n".join(lines)



def _stage_table(summary: dict) -> list[str]:
    s, secs, ranking = summary["settings"], summary["seconds"], summary["ranking"]
    check = (f"score the {ranking['n']} reference architectures on the supernet, Kendall tau against their "
             f"stand-alone top-1 (`spos rank --ground-truth`)" if ranking else "no reference for this data and space")
    return [
        "## What ran", "",
        "| stage | what | time |", "|---|---|---|",
        f"| 1 | supernet (`{s['supernet_config']}`), {summary['supernet']['epochs']} epochs, a uniformly sampled path "
        f"per step | {secs['supernet']:.0f} s |",
        f"| 2 | evolutionary search, population {s['population']}, {s['generations']} generations, "
        f"{summary['search']['scored']} candidates scored on the hold-out split after BN recalibration "
        f"({_score_name(summary['search'].get('score', 'top1'))}), FLOPs at most "
        f"{summary['search']['flops_max'] / 1e6:.3f}M | {secs['search']:.0f} s |",
        f"| 3 | ranking check: {check} | {secs.get('ranking', 0):.0f} s |",
        f"| 4 | retrain the searched architecture from scratch (`{s['retrain_config']}`, {s['retrain_epochs']} "
        f"epochs) | {secs['retrain']:.0f} s |",
        f"| 5 | ONNX export, checked with onnxruntime (max difference {summary['onnx']['max_abs_diff']:.1e}) | "
        f"{secs['export']:.0f} s |",
    ]



def _files_and_commands(summary: dict) -> list[str]:
    """The report's last sections: where each output is, and the commands that do the same."""
    return [
        "## Files", "",
        f"- supernet checkpoint: `{summary['supernet']['checkpoint']}`",
        f"- search history, best architecture, front: `{summary['search']['folder']}/`",
        f"- retrained checkpoint: `{summary['best']['checkpoint']}`",
        *([f"- ranking check (`rank.json`, the scatter): `{summary['ranking']['folder']}/`"] if summary["ranking"] else []),
        f"- ONNX model: `{summary['onnx']['path']}`",
        "- every figure above: `summary.json`", "",
        "## The same with the commands", "",
        "Run in an empty folder, these redo each stage with the settings the demo used (the same seed gives the "
        "same supernet and search on the same machine):", "",
        "```", *summary["commands"], "```", "",
        "## Next: the search engine alone, in seconds", "",
        ENGINE_EXAMPLE, "",
        "```", *ENGINE_COMMANDS, "```", "",
    ]



#: The README's second quick-start example, which the report points to last.
ENGINE_EXAMPLE = ("On digits a search cannot show what it finds. NAS-Bench-Macro lists all 6,561 networks of the "
                  "`mbv2-macro-cifar` space, each trained alone on CIFAR-10, so a search against it costs table "
                  "look-ups: these two commands fetch the table (1.2 MB, checked by its sha256) and run the evolution "
                  "against random search over 20 seeds, with plots of the best network found after each query.")



ENGINE_COMMANDS = ("spos bench nas-bench-macro --download",
                   "spos search --benchmark nas-bench-macro --seeds 20 --flops-max 50e6 --output runs/engine")


__all__ = ['ENGINE_COMMANDS', 'ENGINE_EXAMPLE', 'MEASURED_RANKING', 'SCOPE', 'measured_ranking', 'ranking_headline', 'ranking_line', 'render_report', 'summarise', 'write_plots']
