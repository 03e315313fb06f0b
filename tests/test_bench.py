"""Tabular benchmarks: NAS-Bench-Macro read into spos's terms, fetched with --download, refused when malformed."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from spos.bench import tables as bench
from spos.cli import main
from spos.errors import UserError
from spos.space.architecture import Architecture
from spos.space.flops import cost_table

TABLE = Path(__file__).parents[2] / "shared" / "data" / "nas-bench-macro" / "nas-bench-macro_cifar10.json"
if not TABLE.is_file():
    TABLE = Path("/work/shared/data/nas-bench-macro/nas-bench-macro_cifar10.json")
needs_table = pytest.mark.skipif(not TABLE.is_file(), reason="NAS-Bench-Macro table not present")


def made_up_table(path: Path, keys=("00000000", "11111111", "22222222", "00010000", "00001000", "22212220")) -> Path:
    """A small table in NAS-Bench-Macro's format with spos's own counts and made-up accuracies (%)."""
    space = bench.benchmark_spec("nas-bench-macro").search_space()
    table = cost_table(space)
    data = {}
    for i, key in enumerate(keys):
        arch = Architecture(tuple(map(int, key)), (0,) * 8)
        accs = [80.0 + i, 80.5 + i, 79.5 + i]
        data[key] = {"test_acc": accs, "mean_acc": sum(accs) / 3, "std": 0.4, "params": table.params(arch),
                     "flops": table.macs(arch)}
    path.write_text(json.dumps(data))
    return path


@needs_table
def test_every_key_maps_to_an_architecture_whose_counted_flops_and_params_equal_the_table():
    benchmark = bench.load_benchmark("nas-bench-macro", TABLE)
    assert len(benchmark.entries) == 6561 and len(benchmark.networks) == 3969
    table = cost_table(benchmark.space)
    raw = json.loads(TABLE.read_text())
    for arch, entry in benchmark.entries.items():
        assert (table.macs(arch), table.params(arch)) == (entry.flops, entry.params)
        assert raw[benchmark.spec.key(arch)]["flops"] == entry.flops
    assert benchmark.count_mismatches() == []
    best = max(benchmark.networks, key=benchmark.accuracy)
    assert benchmark.spec.key(best) == "22212220" and benchmark.accuracy(best) == pytest.approx(0.9313, abs=1e-4)


def test_a_made_up_table_reads_with_accuracies_as_fractions_and_twins_as_one(tmp_path):
    path = made_up_table(tmp_path / "t.json", keys=("00000000", "00010000", "00001000", "11111111"))
    benchmark = bench.load_benchmark("nas-bench-macro", path)
    assert len(benchmark.entries) == 4 and len(benchmark.networks) == 3  # 00010000 and 00001000 are twins
    twin = Architecture.parse("0,0,0,0,1,0,0,0/0,0,0,0,0,0,0,0")
    assert benchmark.accuracy(twin) == pytest.approx(0.81)  # the first listed twin's figures
    with pytest.raises(UserError, match="no entry for"):
        benchmark.entry(Architecture.parse("2,2,2,2,2,2,2,2/0,0,0,0,0,0,0,0"))


@pytest.mark.parametrize("content, message", [
    ('{"0000000": {"test_acc": [1], "params": 1, "flops": 1}}', "is not 8 digits"),
    ('{"00000003": {"test_acc": [1], "params": 1, "flops": 1}}', "is not 8 digits"),
    ('{"00000000": {"params": 1, "flops": 1}}', "needs test_acc"),
    ('{"00000000": {"test_acc": ["x"], "params": 1, "flops": 1}}', "is not a finite number"),
    ('[1, 2]', "expected an object of 8-digit keys"),
    ('{"00000000": ', "is not valid JSON"),
])
def test_a_malformed_table_is_one_line(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        bench.load_benchmark("nas-bench-macro", path)


def test_a_binary_or_missing_table_is_one_line(tmp_path, monkeypatch):
    binary = tmp_path / "t.json"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match="is not valid JSON"):
        bench.load_benchmark("nas-bench-macro", binary)
    monkeypatch.setenv("SPOS_BENCHMARKS", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="does not exist; fetch it with `spos bench nas-bench-macro --download`"):
        bench.load_benchmark("nas-bench-macro")
    with pytest.raises(UserError, match="unknown benchmark 'nas-bench-201'"):
        bench.load_benchmark("nas-bench-201")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A made-up table served on 127.0.0.1, registered under its own sha256 as the published one."""
    folder = tmp_path / "served"
    folder.mkdir()
    table = made_up_table(folder / "nas-bench-macro_cifar10.json")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    spec = bench.BENCHMARKS["nas-bench-macro"]
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{table.name}"
    from dataclasses import replace

    monkeypatch.setitem(bench.BENCHMARKS, "nas-bench-macro",
                        replace(spec, url=url, sha256=hashlib.sha256(table.read_bytes()).hexdigest()))
    monkeypatch.setenv("SPOS_BENCHMARKS", str(tmp_path / "cache"))
    yield table, url
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_fetches_checks_and_keeps_the_table(served, tmp_path, capsys):
    table, url = served
    assert main(["bench", "nas-bench-macro", "--download"]) == 0
    out = capsys.readouterr().out
    cached = tmp_path / "cache" / "nas-bench-macro_cifar10.json"
    assert cached.read_bytes() == table.read_bytes()
    assert "6 architectures, 5 distinct networks" in out and "spos's counts equal the table's for all 6" in out
    before = cached.stat().st_mtime_ns
    assert main(["bench", "nas-bench-macro", "--download"]) == 0  # there already: nothing fetched or written
    assert cached.stat().st_mtime_ns == before
    truth = tmp_path / "truth.json"
    assert main(["bench", "nas-bench-macro", "--ground-truth", str(truth)]) == 0
    assert len(json.loads(truth.read_text())) == 5


def test_download_refuses_other_bytes_and_never_overwrites(served, tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    other = tmp_path / "mine.json"
    other.write_text("{}")
    assert main(["bench", "nas-bench-macro", "--download", "--benchmark-file", str(other)]) == 2
    assert "is not the published nas-bench-macro table" in capsys.readouterr().err and other.read_text() == "{}"
    with pytest.raises(UserError, match="download from http://127.0.0.1:9/ failed"):
        bench.download_benchmark("nas-bench-macro", tmp_path / "y.json", url="http://127.0.0.1:9/", timeout=5)
    monkeypatch.setitem(bench.BENCHMARKS, "nas-bench-macro", replace(bench.BENCHMARKS["nas-bench-macro"],
                                                                      sha256="0" * 64))
    with pytest.raises(UserError, match="sha256 differs"):
        bench.download_benchmark("nas-bench-macro", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
