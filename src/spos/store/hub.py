"""The Hugging Face Hub through ``huggingface_hub``: fetch a model folder by repository id, push one.

``HF_ENDPOINT`` is read when a call is made (``huggingface_hub`` reads it once, at import), so a
mirror or a local stand-in of the Hub's HTTP API set after start-up is honoured; the token comes
from ``token=``, ``HF_TOKEN`` or ``huggingface-cli login``, as ``huggingface_hub`` finds it.
A failure is one line saying what to check, never a traceback from inside the HTTP client.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from torch import nn

from spos.errors import UserError
from spos.store import checkpoint, pretrained
from spos.store.pretrained import CARD_NAME, CONFIG_NAME, PICTURE_NAME, WEIGHTS_NAME, is_model_folder

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, PICTURE_NAME)


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id):
        raise UserError(f"{repo_id!r} is neither a folder here nor a Hub repository id (USER/NAME)")
    return repo_id


def _hub_errors():
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    return HfHubHTTPError, LocalEntryNotFoundError, OSError


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def download(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
             token: str | None = None) -> Path:
    """The local folder (in the Hub cache) of repository ``repo_id``'s config and weights."""
    from huggingface_hub import hf_hub_download

    check_repo_id(repo_id)
    try:
        paths = [hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir, token=token,
                                 endpoint=_endpoint()) for name in (CONFIG_NAME, WEIGHTS_NAME)]
    except _hub_errors() as error:
        raise UserError(f"{repo_id}: the Hub could not give its {CONFIG_NAME} and {WEIGHTS_NAME} ({_reason(error)}); "
                        "check the name, the connection, HF_ENDPOINT and HF_TOKEN") from None
    return Path(paths[0]).parent


def push(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         message: str = "Upload a spos model folder") -> str:
    """Upload a model folder's files to ``repo_id`` (created when missing) in one commit; its URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    check_repo_id(repo_id)
    if not is_model_folder(folder):
        raise UserError(f"{folder} is not a spos model folder; write one with `spos export --format hf`")
    api = HfApi(endpoint=_endpoint(), token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
                  for name in FILES if (folder / name).is_file()]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, commit_message=message)
    except _hub_errors() as error:
        raise UserError(f"pushing to {repo_id} failed ({_reason(error)}); check HF_TOKEN (a write token) and "
                        "the connection") from None
    return commit.commit_url


def from_pretrained(path_or_repo: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                    token: str | None = None) -> nn.Module:
    """The FixedNet (or SuperNet) of a model folder, or of a Hub repository ``user/name`` (downloaded
    through ``huggingface_hub``, ``HF_ENDPOINT`` honoured), in eval mode.

    ``model.pretrained_config`` is the folder's config.json: its ``input`` says how to preprocess images.
    """
    path = Path(path_or_repo).expanduser()
    if not path.exists():
        path = download(str(path_or_repo), revision=revision, cache_dir=cache_dir, token=token)
    data = pretrained.load_folder(path)
    model = checkpoint.build_model(data)
    model.pretrained_config = data["pretrained"]
    return model.eval()


def read_hub_checkpoint(path) -> dict | None:
    """``hf://USER/NAME`` as a checkpoint payload: the repository's model folder, downloaded (`checkpoint.READERS`)."""
    if not str(path).startswith(checkpoint.HUB_PREFIX):
        return None
    return pretrained.load_folder(download(str(path)[len(checkpoint.HUB_PREFIX):]))


checkpoint.READERS.append(read_hub_checkpoint)
