"""`spos train-supernet`, `spos train` and `spos eval`."""

from __future__ import annotations

import json

from spos.cli._common import (
    add_command,
    add_input_argument,
    add_weights_argument,
    device,
    holdout,
    positive_float,
    positive_int,
    seed,
    writable_path,
)

ORDER = 20


def _add_run_arguments(parser, default_config: str) -> None:
    parser.add_argument("--config", default=default_config,
                        help=f"a shipped recipe name or a YAML file (default {default_config}); "
                             "shipped: imagenet-supernet, imagenet-retrain, cifar10-supernet, cifar10-retrain, "
                             "digits-supernet, digits-retrain")
    parser.add_argument("--data", default=None, help="dataset: imagefolder, cifar10, cifar100, mnist, digits, synthetic")
    parser.add_argument("--data-root", default=None,
                        help="dataset folder, e.g. /data/cifar10 (layouts: the README's Datasets section)")
    parser.add_argument("--download", action="store_true",
                        help="download the dataset if missing (CIFAR-10/100, MNIST; needs internet)")
    parser.add_argument("--loader", choices=("torch", "dali"), default=None,
                        help="override data.loader: torch (decoding in DataLoader workers on the CPU, default) or "
                             "dali (ImageFolder JPEGs decoded and augmented on the GPU; needs nvidia-dali-cuda120/130)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="override train.epochs")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="override data.batch_size (per process)")
    parser.add_argument("--lr", type=positive_float, default=None, help="override optim.lr")
    parser.add_argument("--device", type=device, default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--seed", type=seed, default=None, help="override train.seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set optim.weight_decay=1e-4 (repeatable)")
    parser.add_argument("--output", type=writable_path, default=None, help="run folder (default runs/<command>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    supernet = add_command(
        subparsers, "train-supernet", help="train a weight-sharing supernet with uniform single-path sampling",
        description="Train the supernet: every step samples one path (block and channel choice per layer) "
                    "uniformly, optionally inside a FLOPs window; every validation.every epochs (default 1) and after "
                    "the last it validates K paths after BN recalibration. Checkpoints every epoch; --resume continues a killed run exactly.",
        example="spos train-supernet --config imagenet-supernet --data-root /data/imagenet --output runs/supernet")
    _add_run_arguments(supernet, "digits-supernet")
    supernet.set_defaults(func=run_train, kind="supernet", preemptible=True)

    fixed = add_command(
        subparsers, "train", help="train one architecture from scratch (a zoo name or a file from `spos search`)",
        description="Train a fixed network from scratch with the ImageNet recipe (cosine LR with warm-up, "
                    "label smoothing, no weight decay on BN/bias, optional mixup and EMA).",
        example="spos train --arch runs/search/best.json --config imagenet-retrain --data-root /data/imagenet")
    fixed.add_argument("--arch", default=None, metavar="NAME_OR_FILE",
                       help="zoo name, architecture file, or 'B,..,B/C,..,C' (default: the config's)")
    _add_run_arguments(fixed, "digits-retrain")
    fixed.set_defaults(func=run_train, kind="fixed", preemptible=True)

    evaluate = add_command(
        subparsers, "eval", help="evaluate a checkpoint: top-1, top-5 and loss on a dataset split",
        description="Evaluate a fixed-network checkpoint (or one supernet path with --arch) on a split. A supernet "
                    "path's BN is recalibrated on the run's own training split, as `spos export` does. --split "
                    "holdout scores the run's recorded hold-out (or a part of it), the images it never trained "
                    "on, as `spos search` does; anything else is refused unless --allow-trained-images says so.",
        example="spos eval runs/train/best.pt --data imagefolder --data-root /data/imagenet --split val")
    evaluate.add_argument("checkpoint", metavar="CKPT", help="a checkpoint from `spos train` or `spos train-supernet`")
    evaluate.add_argument("--data", default=None, help="dataset (default: the one the checkpoint was trained on)")
    evaluate.add_argument("--data-root", default=None,
                          help="dataset folder (default: the one the checkpoint was trained on)")
    evaluate.add_argument("--download", action="store_true",
                          help="download the dataset if missing (CIFAR-10/100, MNIST; needs internet)")
    evaluate.add_argument("--split", choices=("val", "holdout", "train"), default="val",
                          help="split to evaluate on (default val)")
    evaluate.add_argument("--holdout", type=holdout, default=None,
                          help="with --split holdout: how many hold-out images to score, a count or a fraction "
                               "(default: the run's own hold-out, the images it never trained on). More than "
                               "the run held out is refused, fewer are a seeded part of its hold-out; BN "
                               "calibration never changes with it")
    evaluate.add_argument("--holdout-from", choices=("train", "val"), default="train",
                          help="with --split holdout: carve the hold-out from train (default: the run's recorded "
                               "hold-out) or from val, for a network that trained on every training image")
    evaluate.add_argument("--allow-trained-images", action="store_true",
                          help="with --split holdout: score on a hold-out carved from train even when the network "
                               "trained on some of it (it records no hold-out, or --holdout asks for more); the "
                               "output records it")
    evaluate.add_argument("--arch", default=None, help="for a supernet checkpoint: the path to evaluate")
    evaluate.add_argument("--bn-batches", type=positive_int, default=20,
                          help="for a supernet path: training batches its BN is recalibrated on, as export and "
                               "search recalibrate it (default 20)")
    add_weights_argument(evaluate)
    add_input_argument(evaluate)
    evaluate.add_argument("--batch-size", type=positive_int, default=256, help="evaluation batch size (default 256)")
    evaluate.add_argument("--device", type=device, default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=run_eval)


def _sections(args) -> dict:
    sections: dict = {}
    data = {k: v for k, v in (("name", args.data), ("root", args.data_root), ("batch_size", args.batch_size),
                              ("loader", args.loader)) if v is not None}
    if args.download:
        data["download"] = True
    train = {k: v for k, v in (("epochs", args.epochs), ("device", args.device), ("seed", args.seed)) if v is not None}
    if args.epochs is not None:
        train["iterations"] = None
    for key, value in (("data", data), ("train", train), ("optim", {"lr": args.lr} if args.lr is not None else {})):
        if value:
            sections[key] = value
    if getattr(args, "arch", None):
        sections["arch"] = args.arch
    return sections


def run_train(args) -> int:
    from spos.errors import UserError
    from spos.train import load_config, run_training
    from spos.train.elastic import resumes_after_restart
    from spos.train.loop import RUN_MARKERS

    config = load_config(args.config, args.overrides, **_sections(args))
    if config["kind"] != args.kind:
        raise UserError(f"config {args.config!r} is a {config['kind']} recipe; use "
                        f"`spos {'train-supernet' if config['kind'] == 'supernet' else 'train'}` for it")
    output = args.output or f"runs/{'supernet' if args.kind == 'supernet' else 'train'}"
    resume = args.resume or resumes_after_restart(output, RUN_MARKERS)  # torchrun or SLURM started it again
    result = run_training(config, output, resume=resume, progress=not args.no_progress)
    if result.history:
        last = result.history[-1]
        print(f"done: best top-1 {result.best_top1:.4f}, last top-1 {last['val_top1']:.4f} after {last['step']} steps")
    print(f"checkpoints: {result.output}/last.pt, {result.output}/best.pt; metrics: {result.output}/metrics.csv")
    return 0


def run_eval(args) -> int:
    from spos.data.loaders import build_loader
    from spos.errors import UserError
    from spos.nn.calibration import calibration_batches
    from spos.store import checkpoint
    from spos.train import evaluate
    from spos.train.distributed import local_device

    data = checkpoint.load(args.checkpoint)
    weights = checkpoint.chosen_weights(data, args.ema)
    model = checkpoint.build_model(data, prefer_ema=weights == "ema")
    if data["kind"] == "supernet" and not args.arch:
        raise UserError("a supernet checkpoint needs --arch: the path to evaluate ('B,..,B/C,..,C' or a file)")
    _check_holdout_options(args)
    convention = checkpoint.convention_of(data, args.input)
    dataset, record, splits = _scored_images(args, data, model.space, convention)
    device = local_device(args.device)
    model.to(device)
    if data["kind"] == "supernet":
        from spos.space.zoo import resolve_architecture

        arch = resolve_architecture(args.arch, space=model.space)[0]
        model = model.extract(arch, calibration_batches(splits.train, args.bn_batches))
    metrics = evaluate(model, build_loader(dataset, batch_size=args.batch_size, train=False), device=device)
    if args.json:
        print(json.dumps({"split": args.split, "images": record["images"], "weights": weights, **metrics,
                          "scored_images": record}))
    else:
        print(f"{args.split} ({record['images']} images, {weights} weights): top-1 {metrics['top1']:.4f}  "
              f"top-5 {metrics['top5']:.4f}  loss {metrics['loss']:.4f}")
        print(f"scored: {record['images']} {record['data']} images, {record['basis']}")
    return 0


def _check_holdout_options(args) -> None:
    """Refuse hold-out options with another split: ``--holdout`` once moved eval's BN calibration, so one
    that would now do nothing is said, not ignored."""
    from spos.errors import UserError

    if args.split != "holdout" and (args.holdout is not None or args.holdout_from != "train"):
        raise UserError(f"--holdout and --holdout-from choose the images of --split holdout, not of --split "
                        f"{args.split}; add --split holdout or drop them")


def _scored_images(args, data: dict, space, convention):
    """(the images eval scores, their ``scored_images`` record, the run's own splits).

    BN is recalibrated on the run's own training split, as the checkpoint records it and as `spos export`
    recalibrates; ``--split holdout`` follows the hold-out rule of `spos search` and `spos rank`
    (`spos.search.holdout.scoring_sets`): the run's hold-out or a part of it, never images it trained on
    unless ``--allow-trained-images`` says so."""
    from spos.search.holdout import scored_images_record, scoring_sets, with_supernet_data
    from spos.search.run import SearchJob
    from spos.store import checkpoint

    job = None
    if args.split == "holdout":  # refused before any data is read, as search refuses
        job = with_supernet_data(SearchJob(
            supernet=args.checkpoint, data=args.data, data_root=args.data_root, download=args.download,
            holdout=args.holdout, holdout_from=args.holdout_from, allow_trained_images=args.allow_trained_images,
            network="supernet" if data["kind"] == "supernet" else "network"), data.get("config") or {})
    splits = checkpoint.training_splits(data, name=args.data, root=args.data_root, download=args.download,
                                        convention=convention, space=space)
    if job is not None:
        sets = scoring_sets(job, space, convention)
        return sets.scored, sets.record, splits
    dataset = splits.val if args.split == "val" else splits.train
    basis = ("the validation split, which training never reads" if args.split == "val" else
             "the run's training split: the network trained on these images")
    record = scored_images_record(splits.info.name, args.split, None, None, len(dataset), args.split == "val", basis)
    return dataset, record, splits
