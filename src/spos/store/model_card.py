"""The model card (``README.md``) of a model folder, generated from its ``config.json`` alone.

It says what the network is, how it was searched and trained, what was measured on which data,
shows the architecture, and how to load it; the Hub reads its YAML header for the repository's
tags. Every figure comes from the config, so the card cannot claim what the folder does not hold.
"""

from __future__ import annotations

import json

from spos.data.preprocessing import describe_record


def _header(config: dict) -> str:
    dataset = config["input"].get("dataset")
    lines = ["---", "library_name: spos", "pipeline_tag: image-classification",
             "tags: [spos, single-path-one-shot, neural-architecture-search, image-classification]"]
    if dataset:
        lines.append(f"datasets: [{dataset}]")
    if config.get("measured"):
        lines.append("metrics: [accuracy]")
    return "\n".join(lines + ["---", ""])


def _what_it_is(config: dict) -> list[str]:
    space = config["space"]
    if config["kind"] == "fixed":
        arch = config["arch"]
        first = (f"A network of the `{space['name']}` search space found with spos (Single Path One-Shot NAS, "
                 f"Guo et al., arXiv 1904.00420): architecture `{arch['text']}`, "
                 f"{config['flops'] / 1e6:.2f} MFLOPs (multiply-adds, counted by spos), "
                 f"{config['params'] / 1e6:.3f} M parameters.")
    else:
        flags = ", ".join(k for k in ("entangled_kernels", "aligned_choices") if config.get(k)) or "independent weights"
        first = (f"A weight-sharing spos supernet over the `{space['name']}` search space ({flags}; "
                 f"{config['params'] / 1e6:.3f} M parameters in all): search it with `spos search --supernet`.")
    return [first, "", f"Input {space['input_size']}x{space['input_size']}, {space['in_channels']} channel(s), "
            f"{space['num_classes']} classes."]


def _provenance(config: dict) -> list[str]:
    training = config.get("training") or {}
    lines = ["## How it was searched and trained", ""]
    if not training:
        return lines + ["Not recorded: this folder was made from a network without a training record.", ""]
    for key, label in (("searched", "Searched"), ("trained", "Trained")):
        if training.get(key):
            lines.append(f"- {label}: {training[key]}")
    if config.get("weights") == "ema":
        lines.append("- Weights: the run's EMA weights (an exponential moving average of the trained weights)")
    elif config.get("weights") == "raw":
        lines.append("- Weights: the run's raw weights (not its EMA ones)")
    return lines + [""]


def _measured(config: dict) -> list[str]:
    measured = config.get("measured")
    lines = ["## Measured accuracy", ""]
    if not measured:
        return lines + ["Not measured when this folder was written.", ""]
    lines += ["| data | split | images | top-1 | top-5 |", "|---|---|---|---|---|",
              f"| {measured['dataset']} | {measured['split']} | {measured['images']} | "
              f"{100 * measured['top1']:.2f}% | {100 * measured['top5']:.2f}% |", ""]
    return lines + ["Measured by spos when this folder was written, on exactly the weights in it and in the "
                    "preprocessing below.", ""]


def _architecture(config: dict, picture: bool) -> list[str]:
    if config["kind"] != "fixed":
        return []
    arch = config["arch"]
    lines = ["## Architecture", ""]
    if picture:
        lines += ["![architecture](architecture.png)", ""]
    lines += ["| layer | op | width choice |", "|---|---|---|"]
    scales = config["space"]["channel_scales"]
    lines += [f"| {i} | {op} | x{scales[c]:g} |" for i, (op, c) in enumerate(zip(arch["ops"], arch["channels"]))]
    return lines + [""]


def _how_to_load(config: dict) -> list[str]:
    record = config["input"]
    return ["## Preprocessing", "", describe_record(record) + ".", "",
            "The full record (also in `config.json` under `input`): bring the image to `input_size` by `resize`, "
            "then `x = pixels / pixel_max * scale`, channels in `channel_order`, `(x - mean) / std` per channel, "
            "N,C,H,W float32.", "", "```json", json.dumps(record, indent=2), "```", "",
            "## How to load it", "", "```python", "import spos", "",
            'model = spos.from_pretrained("USER/NAME")  # a Hub repository, or the path of this folder',
            'print(model.pretrained_config["input"])   # the preprocessing above', "```", "",
            "In timm: `import spos.deploy.timm; timm.create_model(\"hf-hub:USER/NAME\", pretrained=True)` (or "
            "`\"local-dir:FOLDER\"`); as a multi-scale backbone add `features_only=True, out_indices=(1, 2, 3, 4)`."
            if config["kind"] == "fixed" else "Search it: `spos search --supernet hf://USER/NAME --data ...`.",
            "No file in this folder is a pickle: weights are safetensors, the rest JSON and Markdown.", ""]


def render_model_card(config: dict, *, picture: bool) -> str:
    title = "spos network" if config["kind"] == "fixed" else "spos supernet"
    parts = [_header(config), f"# {title}: {config['space']['name']}", "", *_what_it_is(config), "",
             *_provenance(config), *_measured(config), *_architecture(config, picture), *_how_to_load(config)]
    return "\n".join(parts)
