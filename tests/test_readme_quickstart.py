"""The README's quick start runs as written: its Python API example, and its engine example against the table."""

import re
import shlex
from pathlib import Path

import pytest
from conftest import doc_block

from spos.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE = Path(__file__).parents[2] / "shared" / "data" / "nas-bench-macro" / "nas-bench-macro_cifar10.json"
if not TABLE.is_file():
    TABLE = Path("/work/shared/data/nas-bench-macro/nas-bench-macro_cifar10.json")


def test_readme_python_api_example_runs_and_prints_what_the_readme_says(capsys, monkeypatch):
    code = doc_block("README.md", "python", "# api.py")
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
    bench, search = [shlex.split(line) for line in doc_block("README.md", "bash", "spos bench nas-bench-macro").splitlines()]
    assert bench == ["spos", "bench", "nas-bench-macro", "--download"] and search[:4] == ["spos", "search",
                                                                                         "--benchmark", "nas-bench-macro"]
    assert main(bench[1:-1] + ["--benchmark-file", str(TABLE)]) == 0
    seeds = search.index("--seeds")
    search[seeds + 1] = "3"
    assert main(search[1:] + ["--benchmark-file", str(TABLE)]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = doc_block("README.md", "text", "nas-bench-macro: ").splitlines()
    assert shown[0] in printed
    assert [line.split(":")[0] for line in printed[-len(shown):]] == [line.split(":")[0] for line in shown]
    assert (tmp_path / "runs/engine/engine.json").is_file() and (tmp_path / "runs/engine/engine_curves.png").is_file()


def test_every_document_the_readme_links_exists():
    """The README keeps the quick start and links the reference pages (docs/): no link leads nowhere."""
    root = README.parent
    for doc in [README, *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.endswith((".png", ".svg")):
                assert (doc.parent / target).exists(), f"{doc.name} links {target}, which does not exist"
    linked = set(re.findall(r"\]\((docs/[^)#]+)", README.read_text()))
    assert linked == {f"docs/{path.name}" for path in (root / "docs").glob("*.md")}
