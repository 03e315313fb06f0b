"""`spos export`, `spos latency` and `spos convert-official`: ship a found network and time it."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from spos.cli._common import (
    add_command,
    add_input_argument,
    add_plugin_argument,
    add_weights_argument,
    device,
    non_negative_int,
    positive_float,
    positive_int,
    writable_path,
)
from spos.cli.models import add_space_arguments, space_adaptation
from spos.errors import UserError
from spos.io.files import check_output_file

ORDER = 40


def register(subparsers) -> None:
    _register_export(subparsers)
    _register_latency(subparsers)
    _register_convert(subparsers)


def _register_export(subparsers) -> None:
    export = add_command(
        subparsers, "export", help="export a network to ONNX or TorchScript, checked against PyTorch",
        description="Export a trained FixedNet (a checkpoint from `spos train`, a supernet checkpoint with --arch, "
                    "or a zoo name with fresh weights) to ONNX (dynamic batch) or TorchScript. A supernet path's BN "
                    "is recalibrated on the supernet's training images first, as `spos eval` does. The export is run "
                    "back on a real batch and refused if it differs from PyTorch by more than --tolerance. "
                    "--fuse folds BN into the convs first; --int8 also writes an onnxruntime int8 model "
                    "calibrated on training batches and reports its accuracy drop and speed-up.",
        example="spos export runs/train/best.pt --format onnx --fuse --int8 --output model.onnx")
    export.add_argument("source", metavar="CKPT_OR_ZOO_NAME", help="checkpoint, zoo name, or architecture file")
    export.add_argument("--arch", default=None, help="with a supernet checkpoint: the path to export")
    export.add_argument("--format", choices=("onnx", "torchscript", "hf"), default="onnx",
                        help="file format to write (default onnx); hf: a model folder (model.safetensors, "
                             "config.json, model card) for the Hugging Face Hub, timm and spos.from_pretrained; a "
                             "supernet checkpoint without --arch gives a supernet folder")
    export.add_argument("--output", type=writable_path, default=None,
                        help="file (hf: folder) to write (default: beside the checkpoint)")
    export.add_argument("--force", action="store_true", help="replace the output file (hf: model folder) if it exists")
    export.add_argument("--no-measure", action="store_true",
                        help="hf: do not measure val accuracy for the model card (slow on ImageNet on a CPU)")
    export.add_argument("--opset", type=positive_int, default=17, help="ONNX opset, 17 or newer (default 17)")
    export.add_argument("--tolerance", type=positive_float, default=1e-4, help="largest allowed |difference|, relative to the largest output when that exceeds 1 "
                             "(default 1e-4)")
    export.add_argument("--batch-size", type=positive_int, default=8, help="images in the check batch (default 8)")
    export.add_argument("--fuse", action="store_true", help="fold BN into the convs before exporting")
    export.add_argument("--int8", action="store_true", help="also write an int8 ONNX model (onnxruntime)")
    export.add_argument("--calibration-batches", type=positive_int, default=8, help="int8 calibration batches (8)")
    export.add_argument("--bn-batches", type=positive_int, default=20,
                        help="with a supernet checkpoint: training batches the path's BN is recalibrated on, as "
                             "`spos eval` recalibrates it (default 20)")
    export.add_argument("--data", default=None, help="dataset for the check batch, int8 calibration and a "
                                                     "supernet path's BN (default: the one the checkpoint was "
                                                     "trained on)")
    export.add_argument("--data-root", default=None, help="folder of --data")
    export.add_argument("--download", action="store_true",
                        help="download the dataset if missing (CIFAR-10/100, MNIST; needs internet)")
    add_input_argument(export)
    add_weights_argument(export)
    add_space_arguments(export)
    export.set_defaults(func=run_export)


def _register_latency(subparsers) -> None:
    latency = add_command(
        subparsers, "latency", help="measure latency here, or build a per-layer latency table for the search",
        description="`spos latency model SOURCE` measures a network's latency on this device (warm-up, repeats, "
                    "median and spread). `spos latency table` times every layer x block x channel choice of a "
                    "space alone and saves a lookup table that `spos search --latency-table` sums: --supernet "
                    "builds it for that supernet's space (input size, channels, widths, classes), which the search "
                    "requires. The predictor's error against --check N measured random architectures is printed "
                    "and stored in the table, and a warning given above 15%.",
        example="spos latency table --supernet runs/supernet/last.pt --output latency.json --check 10")
    actions = latency.add_subparsers(dest="action", metavar="{model,table}")
    actions.required = True
    model = actions.add_parser("model", help="measure one network", description="Measure one network's latency.")
    model.add_argument("source", metavar="CKPT_ZOO_OR_ONNX", help="checkpoint, zoo name, arch file or .onnx file")
    model.add_argument("--arch", default=None, help="with a supernet checkpoint: the path to time")
    add_space_arguments(model)
    table = actions.add_parser("table", help="build a per-layer latency table",
                               description="Build a per-layer latency table for a search space on this device.")
    table.add_argument("--output", type=writable_path, required=True, help="table file to write (JSON)")
    table.add_argument("--force", action="store_true", help="replace --output if it exists")
    table.add_argument("--check", type=non_negative_int, default=5, metavar="N",
                       help="measure N random architectures whole and store the predictor's error in the table "
                            "(default 5; 0: no check)")
    table.add_argument("--supernet", default=None, metavar="CKPT",
                       help="build the table for this supernet checkpoint's space, the one `spos search "
                            "--supernet CKPT --latency-table` needs (instead of --space and its options)")
    table.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_space_arguments(table, space_default="oneshot")
    for parser in (model, table):
        add_plugin_argument(parser)
        parser.add_argument("--batch-size", type=positive_int, default=1, help="batch size (default 1)")
        parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: PyTorch's)")
        parser.add_argument("--repeats", type=positive_int, default=30, help="timed runs (default 30)")
        parser.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default cpu)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
    model.set_defaults(func=run_latency_model)
    table.set_defaults(func=run_latency_table)


def _register_convert(subparsers) -> None:
    convert = add_command(
        subparsers, "convert-official", help="import (or export) megvii's official SPOS checkpoints",
        description="Convert an official PyTorch checkpoint (megvii-model SinglePathOneShot / ShuffleNet-Series "
                    "OneShot) into a spos checkpoint: a retrained network with --arch, or the block-search "
                    "supernet (features.N.M.*) with --supernet. --to-official goes the other way.",
        example="spos convert-official checkpoint-150000.pth.tar --supernet --output supernet.pt")
    convert.add_argument("source", help="official checkpoint (or a spos one with --to-official)")
    target = convert.add_mutually_exclusive_group()
    target.add_argument("--arch", default=None, help="architecture of a retrained network (zoo name, file or text)")
    target.add_argument("--supernet", action="store_true", help="the file is the block-search supernet")
    convert.add_argument("--to-official", action="store_true", help="write official key names instead")
    convert.add_argument("--output", type=writable_path, required=True, help="file to write")
    convert.add_argument("--force", action="store_true", help="replace --output if it exists")
    add_space_arguments(convert, space_default="oneshot")
    convert.set_defaults(func=run_convert)


# -- shared helpers ------------------------------------------------------------------------------

def _space_for(args, default: str = "oneshot"):
    from spos.space.searchspace import get_space

    return get_space(args.space or default, **space_adaptation(args))


def load_network(source: str, arch_ref: str | None, args, *, calibrate: bool = True):
    """(FixedNet in eval mode, the checkpoint dict or None): from a checkpoint, or a zoo name / file.

    A supernet path becomes a network with its BN recalibrated as ``spos eval`` recalibrates it
    (`supernet_path_network`); ``calibrate=False``, for timing only, gives the path's network with
    fresh weights instead, since no statistics are worth computing for a stopwatch."""
    from spos.nn.fixed import FixedNet
    from spos.space.zoo import resolve_architecture
    from spos.store import checkpoint

    path = Path(source)
    if path.suffix in (".pt", ".pth", ".tar") or (path.is_file() and path.suffix != ".json") or path.is_dir() \
            or source.startswith(checkpoint.HUB_PREFIX):
        data = checkpoint.load(source)
        weights = checkpoint.chosen_weights(data, getattr(args, "ema", False))  # latency takes no --ema: raw
        model = checkpoint.build_model(data, prefer_ema=weights == "ema")
        if data["kind"] == "supernet":
            if not arch_ref:
                raise UserError(f"{source} is a supernet; pass --arch with the path to use")
            arch = resolve_architecture(arch_ref, space=model.space)[0]
            model = supernet_path_network(model, arch, data, args) if calibrate else FixedNet(model.space, arch)
        elif arch_ref:
            raise UserError("--arch is only for supernet checkpoints")
        return model.eval(), data
    arch, space = resolve_architecture(source, space=_space_for(args) if args.space else None,
                                       **space_adaptation(args))
    return FixedNet(space, arch).eval(), None


def supernet_path_network(supernet, arch, data: dict, args):
    """The supernet path ``arch`` as a FixedNet, its BN recalibrated on ``--bn-batches`` batches of the
    supernet's own training images: the batches ``spos eval`` recalibrates on, so both give one network."""
    from spos.nn.calibration import BN_BATCHES, calibration_batches
    from spos.store import checkpoint

    bn_batches = getattr(args, "bn_batches", BN_BATCHES)  # `spos hub push` takes eval's default
    if bn_batches < 1:
        raise UserError("--bn-batches must be at least 1")
    splits = checkpoint.training_splits(data, name=args.data, root=args.data_root, download=args.download,
                                        convention=checkpoint.convention_of(data, args.input), space=supernet.space)
    print(f"supernet path {arch}: BN recalibrated on {bn_batches} batches of {splits.info.name} training "
          "images, as `spos eval` recalibrates it")
    return supernet.extract(arch, calibration_batches(splits.train, bn_batches))


def data_splits(args, data: dict | None, space, convention=None):
    """The dataset to check and calibrate on, or None (then checks run on random input)."""
    from spos.data.datasets import build_datasets

    config = (data or {}).get("config") or {}
    name = args.data or config.get("data", {}).get("name")
    if not name:
        return None
    root = args.data_root or config.get("data", {}).get("root")
    splits = build_datasets(name, root, download=getattr(args, "download", False), input_size=space.input_size,
                            convention=convention)
    splits.info.check_fits(space)
    return splits


# -- export --------------------------------------------------------------------------------------

def run_export(args) -> int:
    import torch

    from spos.deploy.export import export_model
    from spos.deploy.latency import measure_model

    if args.format == "hf":
        print(write_model_folder(args, args.source, args.output, force=args.force))
        return 0
    if args.output:  # refused before a supernet path is calibrated
        check_output_file(args.output, args.force)
    model, data = load_network(args.source, args.arch, args)
    space = model.space
    suffix = ".onnx" if args.format == "onnx" else ".ts"
    output = Path(args.output) if args.output else Path(args.source).with_suffix(suffix)
    if args.output is None and data is None:
        output = Path(f"{args.source.replace('/', '_').replace(',', '-')}{suffix}")
    if args.int8 and args.format != "onnx":
        raise UserError("--int8 needs --format onnx (it uses onnxruntime's quantization)")
    check_output_file(output, args.force)
    if args.int8:
        check_output_file(int8_output(output), args.force, "the --int8 model")
    from spos.store.checkpoint import convention_of

    convention = convention_of(data, args.input)
    splits = data_splits(args, data, space, convention)
    shape = space.layout.input_shape
    if splits is None:
        print("no dataset named (checkpoint config or --data): checking on random input")
        batch = torch.randn(args.batch_size, *shape)
    else:
        from spos.data.loaders import first_batch

        batch = first_batch(splits.val, args.batch_size)
    if args.fuse:
        from spos.deploy.fuse import fuse_conv_bn

        fused = fuse_conv_bn(model)
        eager = measure_model(model, shape, batch_size=args.batch_size, repeats=20).median_ms
        fast = measure_model(fused, shape, batch_size=args.batch_size, repeats=20).median_ms
        with torch.no_grad():
            diff = float((fused(batch) - model(batch)).abs().max())
        print(f"conv-BN fusion: max |difference| {diff:.2e}; eager {eager:.2f} ms -> fused {fast:.2f} ms "
              f"(x{eager / fast:.2f}) at batch {args.batch_size}")
        model = fused
    from spos.data.preprocessing import describe_record, preprocessing_record

    record = preprocessing_record(splits.info if splits else None, convention, space.input_size, space.in_channels)
    result = export_model(model, output, batch, fmt=args.format, opset=args.opset, tolerance=args.tolerance,
                          convention=convention, preprocessing=record)
    print(result)
    print(f"preprocessing recorded in {output.name}: {describe_record(record)}")
    if data is not None:
        print(exported_weights_text(data, args.ema))
    if args.int8:
        report_int8(result.path, splits, batch, args)
    return 0


def _network_or_supernet(source: str, arch_ref: str | None, args):
    """`load_network`, except that a supernet checkpoint without ``arch_ref`` gives the supernet itself."""
    from spos.store import checkpoint

    path = Path(source)
    if arch_ref is None and (path.suffix in (".pt", ".pth", ".tar") or path.is_dir()
                             or source.startswith(checkpoint.HUB_PREFIX)):
        data = checkpoint.load(source)
        if data["kind"] == "supernet":
            weights = checkpoint.chosen_weights(data, getattr(args, "ema", False))
            return checkpoint.build_model(data, prefer_ema=weights == "ema").eval(), data
    return load_network(source, arch_ref, args)


def write_model_folder(args, source: str, output: str | None, *, force: bool) -> str:
    """``spos export --format hf`` and ``spos hub push``: a model folder of ``source``; what was written, in words."""
    from spos.data.preprocessing import describe_record, preprocessing_record
    from spos.io.files import folder_contents
    from spos.store.checkpoint import chosen_weights, convention_of
    from spos.store.pretrained import CONFIG_NAME, is_model_folder, save_pretrained, training_record

    model, data = _network_or_supernet(source, args.arch, args)
    folder = Path(output) if output else Path(f"{source.rstrip('/').replace('/', '_').replace(',', '-')}-hf")
    if output is None and data is not None and Path(source).is_file():
        folder = Path(source).with_name(Path(source).stem + "-hf")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output {folder} is a file; give a folder (new or empty) for the model folder")
    if folder_contents(folder) and not (force and is_model_folder(folder)):
        raise UserError(f"--output {folder} is not empty; pass --force to replace the spos model folder there, or "
                        "choose another --output (spos never writes over files it did not create)")
    convention = convention_of(data, args.input)
    splits = data_splits(args, data, model.space, convention)
    record = preprocessing_record(splits.info if splits else None, convention, model.space.input_size,
                                  model.space.in_channels)
    measured = None
    if splits is not None and not args.no_measure and data["kind"] == "fixed":  # supernet paths are measured by search
        measured = measure(model, splits)
    weights = chosen_weights(data, getattr(args, "ema", False)) if data is not None else "raw"
    save_pretrained(model, folder, record, measured=measured, training=training_record(data), weights=weights)
    accuracy = (f"val top-1 {100 * measured['top1']:.2f}% on {measured['images']} {measured['dataset']} images"
                if measured else "accuracy not measured")
    return (f"model folder {folder}: {CONFIG_NAME}, model.safetensors, README.md; {weights} weights; {accuracy}; "
            f"input {describe_record(record)}")


def int8_output(path: Path) -> Path:
    """Where ``--int8`` writes: beside the fp32 model, ``NAME.int8.onnx``."""
    return path.with_name(path.stem + ".int8.onnx")


def exported_weights_text(data: dict, ema: bool) -> str:
    """Which of the checkpoint's weights went into the file, and the other choice when there is one."""
    from spos.store.checkpoint import chosen_weights

    weights = chosen_weights(data, ema)
    if weights == "ema" and not data.get("ema"):
        return "weights: EMA, the only ones the model folder holds; `spos eval` reports them"
    if weights == "ema":
        return "weights: EMA (--ema); `spos eval --ema` reports them"
    other = "; the checkpoint also holds EMA weights (--ema)" if data.get("ema") else ""
    return f"weights: raw, the ones best.pt was chosen by and `spos eval` reports{other}"


def report_int8(path: Path, splits, batch, args) -> None:
    from spos.deploy.export import onnx_session, run_onnx
    from spos.deploy.latency import time_callable
    from spos.deploy.quantize import onnx_top1, quantize_onnx

    if splits is None:
        raise UserError("--int8 needs data to calibrate on: pass --data (and --data-root)")
    from spos.data.loaders import build_loader, recalibration_batches

    calibration = [x for x, _ in recalibration_batches(splits.train, batch_size=args.batch_size,
                                                       num_batches=args.calibration_batches, seed=0)]
    int8_path = quantize_onnx(path, calibration, int8_output(path))
    loader = build_loader(splits.val, batch_size=64, train=False)
    fp32_top1, int8_top1 = onnx_top1(path, loader), onnx_top1(int8_path, loader)
    fp32_session, int8_session = onnx_session(path), onnx_session(int8_path)
    fp32_ms = time_callable(lambda: run_onnx(fp32_session, batch), repeats=20).median_ms
    int8_ms = time_callable(lambda: run_onnx(int8_session, batch), repeats=20).median_ms
    print(f"int8 {int8_path}: val top-1 {int8_top1:.4f} vs fp32 {fp32_top1:.4f} "
          f"(drop {100 * (fp32_top1 - int8_top1):.2f} points); onnxruntime {fp32_ms:.2f} -> {int8_ms:.2f} ms "
          f"(x{fp32_ms / int8_ms:.2f}) at batch {len(batch)}")
    advice = int8_advice(fp32_ms, int8_ms, len(batch), cpu_has_vnni(), path)
    if advice:
        print(advice)


def cpu_has_vnni(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU has the VNNI int8 dot-product instructions (None when it cannot be told)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    if not flags:
        return None
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_advice(fp32_ms: float, int8_ms: float, batch_size: int, vnni: bool | None, fp32_path: Path) -> str | None:
    """A word when int8 came out slower than fp32, saying why and what to ship instead."""
    if int8_ms <= fp32_ms:
        return None
    if vnni is False:
        why = ("this CPU has no VNNI instructions (avx512_vnni / avx_vnni), so onnxruntime's int8 kernels "
               "cannot beat its fp32 ones")
    elif vnni:
        why = (f"at batch {batch_size} the quantize / dequantize steps around each layer cost more than the int8 "
               "arithmetic saves on a network this small")
    else:
        why = "this CPU's int8 support could not be read, and the quantize / dequantize steps add work"
    return (f"note: int8 is {int8_ms / fp32_ms:.1f}x slower than fp32 here: {why}. Ship the fp32 model "
            f"({fp32_path}) for this CPU, or try int8 on a CPU with VNNI and a larger batch.")


# -- latency -------------------------------------------------------------------------------------

def _check_latency_args(args) -> None:
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here; use --device cpu")


def run_latency_model(args) -> int:
    from spos.deploy.latency import measure_model, time_callable

    _check_latency_args(args)
    if args.source.endswith(".onnx"):
        import torch

        from spos.deploy.export import onnx_session, run_onnx

        if not Path(args.source).is_file():
            raise UserError(f"{args.source} does not exist")
        try:
            session = onnx_session(args.source, args.threads)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own kinds for every unreadable file
            raise UserError(f"{args.source} is not an ONNX model onnxruntime can load "
                            f"({str(error).strip().splitlines()[0][:200]})") from None
        dims = session.get_inputs()[0].shape[1:]
        x = torch.randn(args.batch_size, *dims)
        stats = time_callable(lambda: run_onnx(session, x), repeats=args.repeats, batch_size=args.batch_size,
                              threads=args.threads)
    else:
        model, _ = load_network(args.source, args.arch, args, calibrate=False)
        space = model.space
        stats = measure_model(model, space.layout.input_shape,
                              batch_size=args.batch_size, repeats=args.repeats, threads=args.threads,
                              device=args.device)
    print(json.dumps(stats.to_dict()) if args.json else f"{args.source}: {stats}")
    return 0


def run_latency_table(args) -> int:
    from spos.deploy.latency import build_latency_table

    _check_latency_args(args)
    if args.check < 0:
        raise UserError(f"--check {args.check}: give a number of architectures, 0 or more")
    check_output_file(args.output, args.force)
    space = _table_space(args)
    table = build_latency_table(space, batch_size=args.batch_size, threads=args.threads, device=args.device,
                                repeats=args.repeats, check_archs=args.check,
                                progress=not (args.json or args.no_progress))
    path = table.save(args.output)
    result = {"table": str(path), "space": space.name, "input_size": space.input_size,
              "batch_size": table.batch_size, "threads": table.threads, "device": table.device}
    if table.check:
        result.update(check_archs=table.check["archs"], mean_abs_error_pct=table.check["mean_error_pct"],
                      max_abs_error_pct=table.check["max_error_pct"])
    if args.json:
        print(json.dumps(result))
    else:
        print(f"latency table for {space.name} at {space.input_size}x{space.input_size}, batch {table.batch_size}, "
              f"{table.threads} threads, {table.device}: {path}")
        print(table.error_text())
    return 0


def _table_space(args):
    """The space a table is built for: the supernet's, as trained, or the one the space options describe."""
    if args.supernet is None:
        return _space_for(args)
    if args.space or args.input_size or args.num_classes or args.in_channels or args.width_mult != 1.0:
        raise UserError("--supernet takes its space from the checkpoint; leave out --space, --input-size, "
                        "--num-classes, --in-channels and --width-mult")
    from spos.space.searchspace import SearchSpace
    from spos.store import checkpoint

    return SearchSpace.from_dict(checkpoint.load_kind(args.supernet, "supernet")["space"])


# -- official checkpoints ------------------------------------------------------------------------

def run_convert(args) -> int:
    from spos.space.zoo import resolve_architecture
    from spos.store import checkpoint
    from spos.store.checkpoint import save_atomic
    from spos.store.official import load_official, official_checkpoint

    output = check_output_file(args.output, args.force)
    if args.to_official:
        data = checkpoint.load(args.source)
        model = checkpoint.build_model(data)
        save_atomic(official_checkpoint(model), output)
        print(f"wrote official-layout weights of the {model.__class__.__name__} in {args.source} to {output} "
              "({'state_dict': {'module.<key>': ...}}, as the official train.py saves under DataParallel: "
              "loadable by the official Search/search.py and train.py's auto-continue)")
        convention = checkpoint.convention_of(data)
        if convention.name != "official":
            print(f"note: this network expects input {convention.describe()}, not the official scripts' "
                  "BGR 0..255; their accuracy on it will not be its own")
        return 0
    if not args.arch and not args.supernet:
        raise UserError("say what the file holds: --arch NAME_OR_FILE (a retrained network) or --supernet")
    space = _space_for(args)
    arch = resolve_architecture(args.arch, space=space)[0] if args.arch else None
    model = load_official(args.source, space, arch)
    make_payload = checkpoint.supernet_payload if arch is None else checkpoint.fixed_payload
    save_atomic(make_payload(model, "official"), output)
    print(f"converted {args.source} into a spos {'supernet' if arch is None else 'FixedNet'} checkpoint: {output} "
          "(input convention: official, BGR 0..255 unnormalised, as the official scripts feed it)")
    return 0


def measure(model: nn.Module, splits, batch_size: int = 256) -> dict:
    """Top-1/top-5 of ``model`` (exactly the weights a folder gets) on ``splits.val``, for config.json and the card."""
    from spos.data.loaders import build_loader
    from spos.train import evaluate

    result = evaluate(model, build_loader(splits.val, batch_size=batch_size, train=False))
    return {"dataset": splits.info.name, "split": "val", "images": len(splits.val), "top1": result["top1"],
            "top5": result["top5"], "loss": result["loss"]}
