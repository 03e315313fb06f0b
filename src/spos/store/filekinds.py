"""What a file handed to spos is, when it is not the checkpoint the command takes.

An ONNX model, a TorchScript archive, a safetensors file or an official megvii checkpoint is not
damaged, nor malicious: it is another kind of file, and the error says which, and what takes it.
Told from the first bytes (a safetensors header, a zip's member names, an ONNX graph), or, for a
checkpoint that loaded, from its keys.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

SAFETENSORS_HEADER_MAX = 100_000_000  # safetensors' own cap on the JSON header's length


def _safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length, then the JSON header itself."""
    if len(head) < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    return 0 < length <= min(size - 8, SAFETENSORS_HEADER_MAX) and head[8:9] == b"{"


def _zip_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        return "torchscript"
    return None


def _onnx(path: Path) -> bool:
    """An ONNX ModelProto with a graph: protobuf has no magic number, so it is parsed."""
    try:
        import onnx

        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any failure to parse means: not an ONNX model
        return False
    return len(model.graph.node) > 0


def sniff(path: str | Path) -> str | None:
    """``onnx``, ``torchscript`` or ``safetensors`` when ``path`` is one, else None."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
        size = path.stat().st_size
    except OSError:
        return None
    if _safetensors(head, size):
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if path.suffix == ".onnx" or head[:1] == b"\x08":  # field 1 (ir_version) comes first in exported models
        return "onnx" if _onnx(path) else None
    return None


def loaded_kind(data) -> str | None:
    """``official-supernet`` or ``official-retrained`` for a loaded megvii checkpoint, else None."""
    from spos.store.official import official_kind

    state = data.get("state_dict", data) if isinstance(data, dict) else None
    return f"official-{official_kind(state)}" if isinstance(state, dict) and official_kind(state) else None


def describe(path: str | Path, kind: str) -> str:
    """One sentence: what the file at ``path`` is, and the command that takes it."""
    return {
        "onnx": f"{path} is an ONNX model (as `spos export` writes), not a spos checkpoint: `spos latency model "
                f"{path}` times it and onnxruntime runs it; here give the .pt checkpoint it was exported from",
        "torchscript": f"{path} is a TorchScript model (as `spos export --format torchscript` writes), not a spos "
                       "checkpoint: torch.jit.load runs it; here give the .pt checkpoint it was exported from",
        "safetensors": f"{path} is a safetensors file of bare weights, without the space and architecture spos "
                       "rebuilds a network from; give the model folder it belongs to (with its config.json, as "
                       "`spos export --format hf` writes) or the spos .pt checkpoint",
        "official-supernet": f"{path} is an official megvii SPOS supernet checkpoint: convert it first with `spos "
                             f"convert-official {path} --supernet --output supernet.pt`",
        "official-retrained": f"{path} is an official megvii SPOS checkpoint of one retrained network: convert it "
                              f"first with `spos convert-official {path} --arch NAME_OR_FILE --output model.pt`",
    }[kind]
