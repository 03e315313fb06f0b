"""Whether the installed torch and torchvision belong together, asked only when torchvision failed.

A CPU torch beside a CUDA torchvision (or a torchvision built for another torch) imports, then dies
with "operator torchvision::nms does not exist": nothing in it says to reinstall the pair. The
versions are read from the installed packages' metadata, so asking costs nothing and imports
nothing; the rule (torchvision 0.N+15 is built for torch 2.N, with the same local build tag such as
``+cpu`` or ``+cu121``) is PyTorch's release pairing since torch 2.0.
"""

from __future__ import annotations

import os
import sys
import traceback
from importlib import metadata

WHEELS = "https://download.pytorch.org/whl"


def _split(version: str) -> tuple[list[int], str]:
    base, _, tag = version.partition("+")
    return [int(part) for part in base.split(".")[:3] if part.isdigit()], tag


def torchvision_mismatch(torch_version: str, vision_version: str) -> str | None:
    """Why torchvision ``vision_version`` is not the build for torch ``torch_version``, or None."""
    (torch_parts, torch_tag), (vision_parts, vision_tag) = _split(torch_version), _split(vision_version)
    if len(torch_parts) < 2 or len(vision_parts) < 2 or torch_parts[0] != 2:
        return None  # a scheme this rule does not know: say nothing rather than something wrong
    if vision_parts[1] != torch_parts[1] + 15:
        return f"torchvision {vision_version} is built for torch 2.{vision_parts[1] - 15}"
    if torch_tag != vision_tag:
        return f"torch is the {torch_tag or 'default'} build and torchvision the {vision_tag or 'default'} one"
    return None


def _installed(package: str) -> str | None:
    module = sys.modules.get(package)
    try:
        return getattr(module, "__version__", None) or metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def reinstall_command(torch_version: str) -> str:
    """The pip command that installs torch ``torch_version`` with its own torchvision."""
    parts, tag = _split(torch_version)
    base = ".".join(map(str, parts))
    vision = f"0.{parts[1] + 15}.{parts[2] if len(parts) > 2 else 0}"
    index = f" --index-url {WHEELS}/{tag}" if tag else ""
    return f"pip install --force-reinstall torch=={base} torchvision=={vision}{index}"


def torchvision_failure(error: BaseException) -> str | None:
    """One line saying which torch/torchvision pair to reinstall when ``error`` came from torchvision
    failing to load (its compiled operators, or its import), else None."""
    frames = traceback.extract_tb(error.__traceback__)
    importing = any(f"{os.sep}torchvision{os.sep}" in frame.filename and frame.name == "<module>" for frame in frames)
    if "torchvision::" not in str(error) and not (importing and isinstance(error, (ImportError, RuntimeError, OSError))):
        return None
    torch_version, vision_version = _installed("torch"), _installed("torchvision")
    if not torch_version or not vision_version:
        return None
    why = torchvision_mismatch(torch_version, vision_version) or "the two builds do not fit"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return (f"torchvision {vision_version} cannot run with torch {torch_version} ({why}: {first}); reinstall the "
            f"pair from one index: {reinstall_command(torch_version)}")
