"""Ship a FixedNet: ONNX (dynamic batch) or TorchScript, each checked against PyTorch on a real batch.

An export that silently computes something else is worse than none, so every export is run
back (onnxruntime for ONNX, the loaded TorchScript module for TorchScript) on the batch it was
given, and refused when its output differs from eager PyTorch by more than ``tolerance``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spos.errors import UserError

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    batch_size: int

    def __str__(self) -> str:
        return (f"{self.format} export {self.path}: max |difference| to PyTorch {self.max_abs_diff:.2e} "
                f"on a batch of {self.batch_size}")


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


def write_torchscript(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(model, example)
        torch.jit.save(scripted, str(path))


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
                 opset: int = DEFAULT_OPSET, tolerance: float = DEFAULT_TOLERANCE) -> ExportResult:
    """Export ``model`` (eval mode) to ``path`` and check it on ``batch``; raise if it drifts.

    The check uses a batch size other than the one traced with, so a batch dimension frozen
    into the graph is caught too. The allowed difference is ``tolerance``, scaled by the largest
    output when that exceeds 1 (see `allowed_difference`).
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if batch.dim() != 4 or len(batch) < 1:
        raise UserError(f"export needs a batch of images shaped N,C,H,W; got {tuple(batch.shape)}")
    model = model.eval().cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = batch[:1] if len(batch) > 1 else torch.cat([batch, batch])
    partial = path.with_name(path.name + ".partial")
    with torch.no_grad():
        if fmt == "onnx":
            write_onnx(model, partial, example, opset)
        else:
            write_torchscript(model, partial, example)
        expected = model(batch).numpy()
    got = exported_output(partial, fmt, batch)
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    allowed = allowed_difference(expected, tolerance)
    if not diff <= allowed:
        partial.unlink(missing_ok=True)
        raise UserError(f"{fmt} export differs from PyTorch by {diff:.3g} (> {allowed:.3g}) on a batch of "
                        f"{len(batch)}; nothing was written")
    partial.replace(path)
    return ExportResult(path, fmt, diff, len(batch))
