"""CPU latency of the zoo's `oneshot` in every deployment form, against torchvision's ShuffleNetV2 1.0x.

In one run, at batch 1 and batch 32 on 224x224 input: eager PyTorch, conv-BN fused, TorchScript,
ONNX Runtime fp32 and ONNX Runtime int8 (static QDQ, calibrated on random batches: no ImageNet
here, so this measures speed, not the accuracy cost) of `oneshot`, and eager + ONNX Runtime of
torchvision's `shufflenet_v2_x1_0` (randomly initialised; weights do not change latency). Then
the per-layer latency table's predictor error on random architectures of the oneshot space.

    python benchmarks/latency.py [--repeats 30] [--check 10] [--table-threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import torch
import torchvision

from spos.deploy.export import export_model, onnx_session, run_onnx
from spos.deploy.fuse import fuse_conv_bn
from spos.deploy.latency import build_latency_table, time_callable
from spos.deploy.quantize import quantize_onnx
from spos.nn.fixed import FixedNet
from spos.space.zoo import resolve_architecture


def forms(model, scratch: Path, name: str, int8: bool):
    """name -> callable(x) for every deployment form of ``model``."""
    example = torch.randn(2, 3, 224, 224)
    result = {"eager": model}
    if int8:
        result["fused"] = fuse_conv_bn(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["torchscript"] = torch.jit.freeze(torch.jit.trace(model, example[:1]))
    onnx_path = export_model(model, scratch / f"{name}.onnx", example).path
    fp32 = onnx_session(onnx_path, torch.get_num_threads())
    result["onnxruntime fp32"] = lambda x: run_onnx(fp32, x)
    if int8:
        calibration = [torch.randn(8, 3, 224, 224) for _ in range(4)]
        int8_path = quantize_onnx(onnx_path, calibration, scratch / f"{name}.int8.onnx")
        int8_session = onnx_session(int8_path, torch.get_num_threads())
        result["onnxruntime int8"] = lambda x: run_onnx(int8_session, x)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--check", type=int, default=10, help="random architectures for the predictor error")
    parser.add_argument("--table-threads", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    arch, space = resolve_architecture("oneshot")
    oneshot = FixedNet(space, arch).eval()
    reference = torchvision.models.shufflenet_v2_x1_0(weights=None).eval()
    print(f"torch {torch.__version__}, onnxruntime threads = torch threads = {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as scratch, torch.inference_mode():
        models = {"oneshot": forms(oneshot, Path(scratch), "oneshot", int8=True),
                  "shufflenet_v2_x1_0": forms(reference, Path(scratch), "tv", int8=False)}
        for batch in (1, 32):
            x = torch.randn(batch, 3, 224, 224)
            repeats = args.repeats if batch == 1 else max(5, args.repeats // 3)
            timings = {}
            for model_name, variants in models.items():
                for form, fn in variants.items():
                    timings[(model_name, form)] = time_callable(lambda: fn(x), warmup=3, repeats=repeats,
                                                                batch_size=batch).median_ms
            base = timings[("shufflenet_v2_x1_0", "eager")]
            print(f"\nbatch {batch} (median of {repeats}; ratio to torchvision shufflenet_v2_x1_0 eager):")
            for (model_name, form), ms in timings.items():
                print(f"  {model_name:<19} {form:<17} {ms:9.2f} ms   x{ms / base:.2f}")

    table = build_latency_table(space, batch_size=1, threads=args.table_threads, check_archs=args.check,
                                progress=True)
    print(f"\nlatency table (oneshot, 224, batch 1, {args.table_threads} thread(s)): mean absolute error "
          f"{table.check['mean_error_pct']:.1f}%, max {table.check['max_error_pct']:.1f}% on {args.check} random "
          "architectures measured whole, as every table records it (target: mean <= 10%)")


if __name__ == "__main__":
    main()
