"""Deployment forms of a network: ONNX/TorchScript export, int8, BN fusion, timm, latency."""
