"""MkDocs hook: pages made at build time from files outside docs/, so they are never copied.

- ``index.md`` (the site's home) is the top-level README.md, its ``docs/`` links made relative to docs/.
- ``benchmarks/*.md`` are benchmarks/README.md split at its ``## `` headings, one page per study, listed
  in the nav under "Benchmark studies" (an empty section in mkdocs.yml that this hook fills). The text
  before the first study is the section's overview page. Other agents keep appending studies to that file;
  a new ``## `` heading becomes a new page without any edit here.

Links in those files to repository files that are not pages (``../src/...``, a script, a plot) would fail
``mkdocs build --strict``, so they become plain text: the link's text and the path from the repository root.
A missing README.md or benchmarks/README.md, or a nav without the "Benchmark studies" section, fails the build.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

SECTION = "Benchmark studies"
SOURCE = "benchmarks/README.md"
HOME = "index.md"

_studies: list[tuple[str, str, str]] = []  # (nav title, src_uri, content), set in on_config
_home = ""

LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _read(root: Path, relative: str) -> str:
    path = root / relative
    if not path.is_file():
        raise PluginError(f"docs/hooks/generated_pages.py: {relative} is missing ({path}); the site's "
                          f"{'home page' if relative == 'README.md' else 'benchmark studies'} are made from it")
    return path.read_text(encoding="utf-8")


def _outside_fences(text: str):
    """The lines of ``text`` with whether each lies outside a fenced code block."""
    inside = False
    for line in text.splitlines(keepends=True):
        if FENCE.match(line):
            inside = not inside
            yield line, False
        else:
            yield line, not inside


def relink(text: str, source: str, page: str, docs: str = "docs") -> str:
    """``text`` of the repository file ``source`` as the page ``page`` (a path under docs/): links to pages
    under docs/ point at them from ``page``; links to other repository files become plain text."""
    def fix(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match.group(0)  # a URL, an anchor on this page, or a site-absolute link
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if repo_path.startswith(f"{docs}/") and repo_path.endswith(".md") and not bang:
            relative = posixpath.relpath(repo_path[len(docs) + 1:], posixpath.dirname(page) or ".")
            return f"[{label}]({relative}{'#' + anchor if anchor else ''})"
        return f"{label} (`{repo_path}`)" if label and label != repo_path else f"`{repo_path}`"

    return "".join(LINK.sub(fix, line) if outside else line for line, outside in _outside_fences(text))


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "study"


def split_studies(text: str) -> list[tuple[str, str, str]]:
    """benchmarks/README.md as (nav title, file name, Markdown) per page: the overview, then one per
    ``## `` heading, each heading raised to the page's title and its subheadings raised one level."""
    parts: list[list[str]] = [[]]
    for line, outside in _outside_fences(text):
        if outside and line.startswith("## "):
            parts.append([])
        parts[-1].append(line)
    pages, names = [], {"index"}
    for lines in parts[1:]:
        heading = lines[0][3:].strip()
        short = heading.split(": ", 1)[0] if ": " in heading else heading
        name = base = _slug(short.replace("`", ""))
        count = 2
        while name in names:
            name, count = f"{base}-{count}", count + 1
        names.add(name)
        body = "".join(line[1:] if outside and line.startswith("###") else line
                       for line, outside in _outside_fences("".join(lines[1:])))
        pages.append((short.replace("`", ""), f"{name}.md", f"# {heading}\n{body}"))
    overview = "".join(parts[0]) if "".join(parts[0]).strip() else "# Benchmarks\n"
    listing = "".join(f"- [{title}]({name})\n" for title, name, _ in pages)
    return [("Overview", "index.md", f"{overview.rstrip()}\n\nThe studies, one page each:\n\n{listing}"), *pages]


def on_config(config, **kwargs):
    global _home, _studies
    root = _root(config)
    _home = relink(_read(root, "README.md"), "README.md", HOME)
    studies = split_studies(_read(root, SOURCE))
    _studies = [(title, f"benchmarks/{name}", relink(content, SOURCE, f"benchmarks/{name}"))
                for title, name, content in studies]
    for item in config.nav or []:
        if isinstance(item, dict) and SECTION in item:
            item[SECTION] = [{title: uri} for title, uri, _ in _studies]
            return config
    raise PluginError(f"docs/hooks/generated_pages.py: mkdocs.yml's nav has no {SECTION!r} section to fill "
                      f"from {SOURCE}")


def on_files(files, config, **kwargs):
    files.append(File.generated(config, HOME, content=_home))
    for _, uri, content in _studies:
        files.append(File.generated(config, uri, content=content))
    return files
