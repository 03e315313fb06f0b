"""Post-training int8 quantization of an exported ONNX network with onnxruntime's tools.

Static quantization (QDQ format, per-channel conv weights, int8 activations) calibrated on a
few training batches; onnxruntime runs the result with its int8 kernels. The accuracy cost is
measured, never assumed: `onnx_top1` scores any ONNX file on a loader.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from spos.deploy.export import onnx_session, run_onnx
from spos.errors import UserError
from spos.io import files


class _Batches(CalibrationDataReader):
    """onnxruntime's CalibrationDataReader protocol over a list of tensors."""

    def __init__(self, input_name: str, batches: list[torch.Tensor]) -> None:
        self._feeds = iter([{input_name: b.detach().cpu().numpy().astype(np.float32)} for b in batches])

    def get_next(self):
        return next(self._feeds, None)


def quantize_onnx(onnx_path: str | Path, calibration: list[torch.Tensor], output_path: str | Path) -> Path:
    """Write an int8 copy of the fp32 ONNX model at ``onnx_path``, calibrated on ``calibration``."""
    if not calibration:
        raise UserError("int8 quantization needs at least one calibration batch")
    onnx_path, output_path = Path(onnx_path), Path(output_path)
    input_name = onnx_session(onnx_path).get_inputs()[0].name
    reader = _Batches(input_name, calibration)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime logs advice on every call
    try:
        with tempfile.TemporaryDirectory(prefix="spos-int8-") as scratch:  # private: onnxruntime wants paths
            prepared, quantized = Path(scratch) / "prepared.onnx", Path(scratch) / "int8.onnx"
            quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
            files.copy_in_atomic(quantized, output_path)
    finally:
        logging.getLogger().setLevel(quiet)
    return output_path


def onnx_top1(path: str | Path, loader) -> float:
    """Top-1 accuracy of an ONNX model on every batch of ``loader``."""
    session = onnx_session(path)
    correct = total = 0
    for x, y in loader:
        correct += int((torch.from_numpy(run_onnx(session, x)).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)
