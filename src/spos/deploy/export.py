"""Ship a FixedNet: ONNX (dynamic batch) or TorchScript, each checked against PyTorch on a real batch.

An export that silently computes something else is worse than none, so every export is run
back (onnxruntime for ONNX, the loaded TorchScript module for TorchScript) on the batch it was
given, and refused when its output differs from eager PyTorch by more than ``tolerance``.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spos.data.conventions import InputConvention
from spos.errors import UserError
from spos.io import files

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
ONNX_INPUT_KEY = "spos.input"  # metadata_props key holding the input convention as JSON
TORCHSCRIPT_INPUT_FILE = "spos_input.json"  # the same, as a TorchScript extra file


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    batch_size: int
    convention: InputConvention | None = None
    preprocessing: dict | None = None  # the record written into the file's metadata (`export_model`)

    def __str__(self) -> str:
        text = (f"{self.format} export {self.path}: max |difference| to PyTorch {self.max_abs_diff:.2e} "
                f"on a batch of {self.batch_size}")
        if self.preprocessing is not None:  # described from what the file records, channels and raw pixels too
            from spos.data.preprocessing import convention_from_record

            record = self.preprocessing
            text += "; input " + convention_from_record(record).describe(record.get("channels"),
                                                                           record.get("pixel_max"))
        elif self.convention is not None:
            text += f"; input {self.convention.describe()}"
        return text


def onnx_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, x: torch.Tensor) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})[0]


def write_onnx(model: nn.Module, path: Path, example: torch.Tensor, opset: int = DEFAULT_OPSET) -> None:
    """The TorchScript-based exporter: fast, and its graphs keep a symbolic batch dimension."""
    if opset < 17:
        raise UserError(f"--opset {opset}: use 17 or newer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=opset, dynamo=False)


def write_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Add ``metadata`` to the model's ``metadata_props``, where a deployer's runtime can read it."""
    import onnx

    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def read_input_convention(path: str | Path) -> dict | None:
    """The input convention an exported model (ONNX or TorchScript) records, or None."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[ONNX_INPUT_KEY]) if ONNX_INPUT_KEY in props else None
    extra = {TORCHSCRIPT_INPUT_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_INPUT_FILE]) if extra[TORCHSCRIPT_INPUT_FILE] else None


def write_torchscript(model: nn.Module, path: Path, example: torch.Tensor,
                      extra_files: dict[str, str] | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(model, example)
        torch.jit.save(scripted, str(path), _extra_files=extra_files or {})


def exported_output(path: Path, fmt: str, x: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        return run_onnx(onnx_session(path), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        return loaded(x).numpy()


def allowed_difference(expected: np.ndarray, tolerance: float) -> float:
    """``tolerance`` in absolute terms for outputs up to 1, relative to the largest output beyond:
    float32 carries about 7 digits, so logits in the thousands cannot agree to 1e-4 absolute."""
    return tolerance * max(1.0, float(np.abs(expected).max()))


def export_model(model: nn.Module, path: str | Path, batch: torch.Tensor, *, fmt: str = "onnx",
                 opset: int = DEFAULT_OPSET, tolerance: float = DEFAULT_TOLERANCE,
                 convention: InputConvention | None = None, preprocessing: dict | None = None) -> ExportResult:
    """Export ``model`` (eval mode) to ``path`` and check it on ``batch``; raise if it drifts.

    The check uses a batch size other than the one traced with, so a batch dimension frozen
    into the graph is caught too. The allowed difference is ``tolerance``, scaled by the largest
    output when that exceeds 1 (see `allowed_difference`). ``convention`` (how pixels become the
    input) is written into the file's metadata: ONNX ``metadata_props[ONNX_INPUT_KEY]``, TorchScript
    extra file ``TORCHSCRIPT_INPUT_FILE``, both JSON: ``preprocessing`` (the whole record of
    `spos.data.preprocessing.preprocessing_record`, a superset of the convention's dict) when given.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if batch.dim() != 4 or len(batch) < 1:
        raise UserError(f"export needs a batch of images shaped N,C,H,W; got {tuple(batch.shape)}")
    model = model.eval().cpu()
    path = Path(path)
    if preprocessing is None and convention is not None:
        preprocessing = convention.to_dict()
    recorded = json.dumps(preprocessing) if preprocessing is not None else None
    with tempfile.TemporaryDirectory(prefix="spos-export-") as scratch:  # private: the exporters want a path
        partial = Path(scratch) / path.name
        diff = _write_and_check(model, partial, batch, fmt, opset, tolerance, recorded)
        files.copy_in_atomic(partial, path)
    return ExportResult(path, fmt, diff, len(batch), convention, preprocessing)


def _write_and_check(model: nn.Module, partial: Path, batch: torch.Tensor, fmt: str, opset: int, tolerance: float,
                     recorded: str | None) -> float:
    """Export to ``partial`` (with ``recorded``, the preprocessing JSON, in its metadata) and return its largest
    difference to PyTorch on ``batch``; raise if too large."""
    example = batch[:1] if len(batch) > 1 else torch.cat([batch, batch])
    with torch.no_grad():
        if fmt == "onnx":
            write_onnx(model, partial, example, opset)
            if recorded is not None:
                write_onnx_metadata(partial, {ONNX_INPUT_KEY: recorded})
        else:
            write_torchscript(model, partial, example,
                              {TORCHSCRIPT_INPUT_FILE: recorded} if recorded is not None else None)
        expected = model(batch).numpy()
    got = exported_output(partial, fmt, batch)
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    allowed = allowed_difference(expected, tolerance)
    if not diff <= allowed:
        raise UserError(f"{fmt} export differs from PyTorch by {diff:.3g} (> {allowed:.3g}) on a batch of "
                        f"{len(batch)}; nothing was written")
    return diff
