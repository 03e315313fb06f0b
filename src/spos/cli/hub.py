"""`spos hub push`: share a network or a supernet on the Hugging Face Hub as a model folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

from spos.cli._common import add_command, add_input_argument
from spos.cli.models import add_space_arguments
from spos.errors import UserError

ORDER = 45


def register(subparsers) -> None:
    hub = add_command(
        subparsers, "hub", help="share a network or supernet on the Hugging Face Hub",
        description="`spos hub push SOURCE --repo USER/NAME` uploads a model folder (model.safetensors, config.json, "
                    "model card): SOURCE is such a folder (`spos export --format hf`), a checkpoint, or a run folder "
                    "(its best.pt, else last.pt), turned into one first. The token comes from HF_TOKEN or "
                    "`huggingface-cli login`; HF_ENDPOINT names another Hub. Load it back with "
                    "spos.from_pretrained(\"USER/NAME\"), or give hf://USER/NAME to any command that takes a checkpoint.",
        example="spos hub push runs/retrain --repo me/spos-oneshot-cifar10")
    actions = hub.add_subparsers(dest="action", metavar="{push}")
    actions.required = True
    push = actions.add_parser("push", help="upload a model folder, checkpoint or run",
                              description="Upload a model folder, a checkpoint or a run to the Hub.")
    push.add_argument("source", metavar="RUN_CKPT_OR_FOLDER", help="model folder, checkpoint or run folder")
    push.add_argument("--repo", required=True, metavar="USER/NAME", help="Hub repository (created when missing)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--arch", default=None, help="with a supernet checkpoint: push this path as a network")
    push.add_argument("--data", default=None, help="dataset to measure on (default: the checkpoint's)")
    push.add_argument("--data-root", default=None, help="folder of --data")
    push.add_argument("--no-measure", action="store_true", help="do not measure val accuracy for the model card")
    add_input_argument(push)
    add_space_arguments(push)
    push.set_defaults(func=run_push, download=False)


def _checkpoint_of(source: Path) -> Path:
    """A run folder's best.pt (else last.pt); any other path as it is."""
    if source.is_dir():
        for name in ("best.pt", "last.pt"):
            if (source / name).is_file():
                return source / name
    return source


def run_push(args) -> int:
    from spos.cli.deploy import write_model_folder
    from spos.store.hub import check_repo_id, push
    from spos.store.pretrained import is_model_folder

    check_repo_id(args.repo)
    source = Path(args.source)
    if not source.exists():
        raise UserError(f"{source} does not exist; give a model folder, a checkpoint or a run folder")
    if is_model_folder(source):
        print(f"pushed {source} to {push(source, args.repo, private=args.private)}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "model"
        print(write_model_folder(args, str(_checkpoint_of(source)), str(folder), force=False))
        print(f"pushed to {push(folder, args.repo, private=args.private)}")
    return 0
