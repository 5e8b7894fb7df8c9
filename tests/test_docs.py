"""The documentation keeps up with the code: every registered member, preset and command is named in README.md
or a page of docs/, the README stays a front page (under 250 lines) that links every page of docs/, and
every relative Markdown link (and the heading it points at, if any) exists. Reads files and the registries
only: no run, no network."""
from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 250
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def prose(path: Path) -> str:
    """The page without its fenced code blocks (what a link or a heading can be)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def documented_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in pages())


def is_documented(name: str, text: str) -> bool:
    """``name`` appears as code: `name`, or as the first word of a code span (`run [flags]`, `resnet18/none`)."""
    return re.search(r"`" + re.escape(name) + r"(?=[`\s\[/:=,(])", text) is not None


def cli_commands() -> list[str]:
    """Every subcommand of ``python -m benchmark``: the ``add_parser("name", ...)`` calls of benchmark/cli/
    (read off the AST, so that the test does not import the command line and its dependencies)."""
    found = []
    for path in sorted((ROOT / "benchmark" / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "add_parser" and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append(node.args[0].value)
    return found


def registered() -> dict[str, list[str]]:
    from benchmark.config.presets import preset_names
    from registry.backbones import BACKBONES
    from registry.clusterers import CLUSTERERS
    from registry.datasets import DATASETS
    from registry.pretexts import PRETEXTS

    return {"backbone": BACKBONES.names(), "pretext": PRETEXTS.names(), "clusterer": CLUSTERERS.names(),
            "data set": DATASETS.names(), "preset": preset_names(), "command": cli_commands()}


def test_the_command_list_is_read_off_the_code() -> None:
    commands = cli_commands()
    assert {"run", "list", "plan", "report", "reproduce"} <= set(commands), commands
    assert len(commands) == len(set(commands)), commands


@pytest.mark.parametrize("kind", ["backbone", "pretext", "clusterer", "data set", "preset", "command"])
def test_every_registered_name_is_documented(kind: str) -> None:
    names = registered()[kind]
    assert names, f"no {kind} registered: the test reads the wrong registry"
    text = documented_text()
    missing = [n for n in names if not is_documented(n, text)]
    assert not missing, (f"{kind}s not named (as `name`) in README.md or docs/*.md: {missing}; "
                         "add them to the page of their kind (see docs/architecture.md, Adding a member)")


def test_readme_is_a_front_page() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n < README_MAX_LINES, f"README.md has {n} lines; move details into docs/ (limit {README_MAX_LINES})"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / t.split("#", 1)[0]).resolve() for p, t in links() if p == README}
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages missing from the README's Documentation list: {unlinked}"


def links() -> list[tuple[Path, str]]:
    out = []
    for page in pages():
        for target in LINK.findall(prose(page)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                out.append((page, target))
    return out


def test_every_relative_link_points_to_a_file_that_exists() -> None:
    assert links(), "no relative links found: the link pattern is wrong"
    broken = []
    for page, target in links():
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def slugs(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page (lower case, punctuation dropped, spaces to hyphens,
    -1, -2, ... for repeats)."""
    seen: Counter[str] = Counter()
    out = set()
    for line in prose(page).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return out


def test_every_anchor_of_a_relative_link_names_a_heading() -> None:
    broken = []
    for page, target in links():
        path, _, anchor = target.partition("#")
        dest = (page.parent / path) if path else page
        if anchor and dest.suffix == ".md" and dest.is_file() and anchor not in slugs(dest):
            broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to headings that do not exist:\n" + "\n".join(broken)
