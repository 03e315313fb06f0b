"""`--download`: torchvision's CIFAR-10 and MNIST download, served from a local folder on 127.0.0.1.

The classes' URLs and checksums are pointed at files made here, so torchvision's own download,
checksum and extraction code runs without the internet.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest
from torchvision import datasets

from spos.cli import build_parser, main
from spos.data.datasets import build_datasets
from spos.errors import UserError


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(folder, base URL) of a file server on 127.0.0.1 that lives as long as the test."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _serve_mnist(folder, url, monkeypatch, sizes=(12, 6)) -> None:
    rng = np.random.default_rng(0)
    resources = []
    for prefix, n in zip(("train", "t10k"), sizes):
        for stem, array in ((f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28))),
                            (f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)):
            data = gzip.compress(_idx(array))
            (folder / f"{stem}.gz").write_bytes(data)
            resources.append((f"{stem}.gz", _md5(data)))
    monkeypatch.setattr(datasets.MNIST, "mirrors", [url])
    monkeypatch.setattr(datasets.MNIST, "resources", resources)


def _serve_cifar10(folder, url, monkeypatch, per_batch=2) -> None:
    rng = np.random.default_rng(0)
    members, sums = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": [0, 1][:per_batch]}
        members[name] = pickle.dumps(entry)
    members["batches.meta"] = pickle.dumps({"label_names": [f"class{i}" for i in range(10)]})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())
    sums = {name: _md5(data) for name, data in members.items()}
    cls = datasets.CIFAR10
    monkeypatch.setattr(cls, "url", url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(cls, "tgz_md5", _md5(buffer.getvalue()))
    monkeypatch.setattr(cls, "train_list", [[n, sums[n]] for n in members if n.startswith("data_batch")])
    monkeypatch.setattr(cls, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": sums["batches.meta"]})


def test_mnist_download_into_a_new_root(server, tmp_path, monkeypatch):
    folder, url = server
    _serve_mnist(folder, url, monkeypatch)
    root = tmp_path / "data" / "mnist"
    with pytest.raises(UserError, match="does not exist; pass the right --data-root or pass --download"):
        build_datasets("mnist", root)
    splits = build_datasets("mnist", root, download=True)
    assert (len(splits.train), len(splits.val)) == (12, 6) and splits.train.images.shape[-1] == 32
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    assert len(build_datasets("mnist", root, download=True).val) == 6  # there already: nothing fetched again


def test_cifar10_download_into_a_new_root(server, tmp_path, monkeypatch):
    folder, url = server
    _serve_cifar10(folder, url, monkeypatch)
    splits = build_datasets("cifar10", tmp_path / "cifar10", download=True, holdout=2)
    assert (len(splits.train), len(splits.holdout), len(splits.val)) == (8, 2, 2)
    assert tuple(splits.train.images.shape[1:]) == (3, 32, 32)


def test_failed_download_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # the discard port: refused
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    argv = ["eval", "nothing.pt", "--data", "mnist", "--data-root", str(tmp_path / "mnist"), "--download"]
    with pytest.raises(UserError, match="download into .* failed"):
        build_datasets("mnist", tmp_path / "mnist", download=True)
    with pytest.raises(UserError, match="has to be put in --data-root by hand"):
        build_datasets("imagefolder", tmp_path, download=True)
    assert build_parser().parse_args(argv).download


def test_download_leaves_data_that_is_already_readable_untouched(tmp_path, monkeypatch):
    """A read-only MNIST of .gz files is read as it is: torchvision would gunzip beside them."""
    import gzip as gz

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 4), ("t10k", 2)):
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gz.compress(_idx(np.zeros((n, 28, 28)))))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gz.compress(_idx(np.arange(n))))
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # a fetch would fail
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    before = sorted(p.name for p in raw.iterdir())
    assert len(build_datasets("mnist", f"~/{tmp_path.name}", download=True).train) == 4  # ~ as in the README
    assert sorted(p.name for p in raw.iterdir()) == before


@pytest.mark.parametrize("command", ["train", "train-supernet", "search", "eval", "export", "demo"])
def test_every_command_that_takes_data_takes_download(command):
    positional = {"eval": ["x.pt"], "export": ["x.pt"], "search": ["--supernet", "x.pt"]}.get(command, [])
    args = build_parser().parse_args([command, *positional, "--data", "mnist", "--download"])
    assert args.download is True


def test_demo_downloads_before_it_writes_anything(server, tmp_path, monkeypatch):
    import spos.train.loop

    folder, url = server
    _serve_mnist(folder, url, monkeypatch)
    out = tmp_path / "demo"

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # the data is there: stop before the (slow) training

    monkeypatch.setattr(spos.train.loop, "run_training", stop)
    assert main(["demo", "--data", "mnist", "--data-root", str(tmp_path / "mnist"), "--download",
                 "--output", str(out), "--no-progress"]) == 130
    assert (tmp_path / "mnist" / "MNIST" / "raw").is_dir() and (out / "demo.json").is_file()
