"""The documentation a newcomer reads: every relative link in the Markdown files resolves, and the README
stays short.

A link resolves when its path (relative to the file, or to the repository root when it starts with `/`)
names an existing file or folder, and its `#anchor`, if any, names a heading of the Markdown file it points
to (GitHub's slugs: lower case, punctuation dropped, spaces to hyphens, `-1`, `-2` for repeats) or an
explicit `<a id=...>` / `<a name=...>`. Links with a scheme (`https:`, `mailto:`) are not checked; links
inside code blocks and code spans are not links. The files checked are the tracked Markdown files and the
new ones not yet added (untracked but not ignored), so a page is checked before its first commit.
"""
from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

from testbed.servers import REPO

README_MAX_LINES = 160

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]+(?:\([^\s()]*\)[^\s()]*)*)"
                         r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def markdown_files() -> list[str]:
    """Tracked Markdown files, and new ones that are neither tracked nor ignored yet."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "*.md"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted({name for name in out.split("\0") if name and (REPO / name).is_file()})


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence) \
                    and not line.strip()[len(opening.group(1)):].strip():
                fence = None
        else:
            lines.append((number, line))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # emphasis underscores, not snake_case ones
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a Markdown file offers: heading slugs (with GitHub's -1, -2 for repeats) and <a id>."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    previous = ""
    for _, line in prose_lines(text):
        heading = None
        atx = ATX_HEADING.match(line)
        if atx:
            heading = atx.group(2) or ""
        elif (SETEXT_UNDERLINE.match(line) and previous.strip() and not ATX_HEADING.match(previous)
              and not previous.lstrip().startswith(("|", ">"))):
            heading = previous.strip()
        previous = line
        if heading is None:
            continue
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code."""
    result = []
    for number, line in prose_lines(text):
        prose = CODE_SPAN.sub("", line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(prose)]
        definition = REFERENCE_DEFINITION.match(prose)
        if definition:
            targets.append(definition.group(1))
        result += [(number, target.strip("<>")) for target in targets]
    return result


def broken(md: Path, target: str, root: Path = REPO) -> str | None:
    """Why a link from `md` does not resolve, or None when it does (or is not a relative link)."""
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    if not path_part:
        destination = md
    elif path_part.startswith("/"):
        destination = root / path_part.lstrip("/")
    else:
        destination = md.parent / path_part
    if not destination.exists():
        return "no such file"
    if root.resolve() not in destination.resolve().parents and destination.resolve() != root.resolve():
        return "outside the repository"
    if anchor:
        if destination.is_dir() or destination.suffix.lower() != ".md":
            return f"#{anchor} on a file that is not Markdown"
        if unquote(anchor).lower() not in anchors(destination):
            return f"no heading for #{anchor}"
    return None


@pytest.mark.parametrize("name", markdown_files())
def test_relative_links_resolve(name):
    md = REPO / name
    problems = [f"{name}:{number}: {target} ({reason})" for number, target in links(md.read_text(encoding="utf-8"))
                if (reason := broken(md, target))]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_fits_on_two_screens():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


def test_the_new_pages_are_checked():
    assert {"README.md", "terraform/README.md", "retrain_job/README.md", "docs/reliability.md",
            "docs/performance.md"} <= set(markdown_files())


@pytest.mark.parametrize(("heading", "slug"), [
    ("Two commands", "two-commands"),
    ("Three evaluators, chosen by batch size", "three-evaluators-chosen-by-batch-size"),
    ("What a run publishes: bundles and the pointer", "what-a-run-publishes-bundles-and-the-pointer"),
    ("Penguin species (`penguins`)", "penguin-species-penguins"),
    ("`make serve` and *more*", "make-serve-and-more"),
    ("FAST_PREDICTOR_MAX_ROWS", "fast_predictor_max_rows"),
    ("A [linked](x.md) heading", "a-linked-heading"),
    ("Deploy, roll out, roll back", "deploy-roll-out-roll-back"),
])
def test_github_slugs(heading, slug):
    assert github_slug(heading) == slug


def test_the_checker_finds_broken_links(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Same\n\n## Same\n\n```\n[in code](nowhere.md)\n```\n"
                    "[ok](page.md#same-1) [`code` text](page.md#title) [web](https://example.com/x) "
                    "`[span](nowhere.md)` [missing](gone.md) [bad anchor](page.md#nope)\n[ref]: other.md\n",
                    encoding="utf-8")
    found = {target: broken(page, target, root=tmp_path) for _, target in links(page.read_text(encoding="utf-8"))}
    assert found == {"page.md#same-1": None, "page.md#title": None, "https://example.com/x": None,
                     "gone.md": "no such file", "page.md#nope": "no heading for #nope", "other.md": "no such file"}
