"""The README's quick start runs as written: its Python API example, and its engine example against the table."""

import re
import shlex
from pathlib import Path

import pytest

from spos.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE = Path(__file__).parents[2] / "shared" / "data" / "nas-bench-macro" / "nas-bench-macro_cifar10.json"
if not TABLE.is_file():
    TABLE = Path("/work/shared/data/nas-bench-macro/nas-bench-macro_cifar10.json")


def readme_block(language: str, first_line: str) -> str:
    for block in re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README has no {language} block starting {first_line!r}")


def test_readme_python_api_example_runs_and_prints_what_the_readme_says(capsys, monkeypatch):
    code = readme_block("python", "# api.py")
    exec(compile(code, "README.md:api.py", "exec"), {"__name__": "readme_api"})
    printed = capsys.readouterr().out.strip()
    said = re.search(r"It prints `([^`]+)`", README.read_text()).group(1)
    head, tail = said.split("...")
    assert printed.startswith(head) and printed.endswith(tail), (printed, said)


@pytest.mark.skipif(not TABLE.is_file(), reason="NAS-Bench-Macro table not present")
def test_readme_engine_example_runs_against_the_table(tmp_path, monkeypatch, capsys):
    """The two commands as the README gives them, the table given as a file instead of downloaded, fewer
    seeds to stay fast: the first line it prints is the README's, and the JSON and the plot are written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPOS_BENCHMARKS", str(tmp_path / "cache"))
    bench, search = [shlex.split(line) for line in readme_block("bash", "spos bench nas-bench-macro").splitlines()]
    assert bench == ["spos", "bench", "nas-bench-macro", "--download"] and search[:4] == ["spos", "search",
                                                                                         "--benchmark", "nas-bench-macro"]
    assert main(bench[1:-1] + ["--benchmark-file", str(TABLE)]) == 0
    seeds = search.index("--seeds")
    search[seeds + 1] = "3"
    assert main(search[1:] + ["--benchmark-file", str(TABLE)]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = readme_block("text", "nas-bench-macro: ").splitlines()
    assert shown[0] in printed
    assert [line.split(":")[0] for line in printed[-5:]] == [line.split(":")[0] for line in shown]
    assert (tmp_path / "runs/engine/engine.json").is_file() and (tmp_path / "runs/engine/engine_curves.png").is_file()
