"""The documentation site (mkdocs.yml) without building it: the README stays a front page, every nav page
exists, and the hook that makes pages from README.md and benchmarks/README.md splits and relinks them."""

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def nav_pages(items):
    """Every page path of a mkdocs nav, and the sections the hook fills (those left empty)."""
    pages, empty = [], []
    for item in items:
        title, value = next(iter(item.items())) if isinstance(item, dict) else (None, item)
        if isinstance(value, list):
            if not value:
                empty.append(title)
            sub_pages, sub_empty = nav_pages(value)
            pages += sub_pages
            empty += sub_empty
        else:
            pages.append(value)
    return pages, empty


def test_the_readme_is_a_front_page_of_at_most_15000_bytes():
    assert len((ROOT / "README.md").read_bytes()) <= 15_000


def test_every_page_in_the_nav_exists_and_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages, filled_by_hook = nav_pages(config["nav"])
    generated = {"index.md": ROOT / "README.md"}  # made by docs/hooks/generated_pages.py
    for page in pages:
        assert (ROOT / "docs" / page).is_file() or generated.get(page, ROOT / "nowhere").is_file(), page
    assert filled_by_hook == ["Benchmark studies"] and (ROOT / "benchmarks" / "README.md").is_file()
    assert config["hooks"] == ["docs/hooks/generated_pages.py"] and (ROOT / config["hooks"][0]).is_file()
    assert {path.name for path in (ROOT / "docs").glob("*.md")} <= set(pages)


def test_the_hook_splits_the_benchmark_studies_and_unlinks_repository_files():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("generated_pages", ROOT / "docs" / "hooks" / "generated_pages.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    text = ("# Benchmarks\n\nMachine.\n\n## `a.py`: one study\n\n### Detail\n\n```bash\n## a comment\n```\n"
            "## On a GPU: two\n\nSee [the code](../src/spos/space.py), [zoo](../docs/zoo.md#x) and [u](https://x.org).\n")
    pages = hook.split_studies(text)
    assert [(title, name) for title, name, _ in pages] == [("Overview", "index.md"), ("a.py", "a-py.md"),
                                                           ("On a GPU", "on-a-gpu.md")]
    assert pages[0][2].startswith("# Benchmarks\n\nMachine.") and "- [a.py](a-py.md)" in pages[0][2]
    assert pages[1][2].startswith("# `a.py`: one study\n") and "\n## Detail\n" in pages[1][2] and "## a comment" in pages[1][2]
    relinked = hook.relink(pages[2][2], "benchmarks/README.md", "benchmarks/on-a-gpu.md")
    assert "the code (`src/spos/space.py`)" in relinked and "[zoo](../zoo.md#x)" in relinked
    assert "[u](https://x.org)" in relinked
    assert hook.relink("[spaces](docs/spaces.md)", "README.md", "index.md") == "[spaces](spaces.md)"
