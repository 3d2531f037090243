"""The design notes are the one place code and docs cite: every reference resolves to a heading
there, and nothing cites a section of a document outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where references to the design notes are looked for.
CITING = ("threatshare", "workers", "tests", "bench", "deploy", "examples", "docs", "README.md")
#: Where a section tag of an outside document is refused (this file names the forms it refuses).
TAGGED = ("threatshare", "workers", "tests", "bench", "deploy", "examples", "docs", "README.md")
THIS = Path(__file__).resolve()
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".service", ".txt", ""}

REFERENCE = re.compile(r"docs/([\w./-]+?\.md)#([\w-]+)")
# "S13", "(S5)", "S2.1", "reference §4" and a bare "§3": sections of a document that is not in
# the repository. An RFC's sections ("RFC 6749 §2.3") are a public standard's and stay.
_SECTIONS = r"§\s?[0-9][0-9a-z.]*"
SECTION_TAG = re.compile(
    rf"(?<![\w/#.-])S(?:[1-9]|1[0-9])(?:\.\d)?(?![\w-])|reference §|(?<![\w/#]){_SECTIONS}"
    r"|reference/(?:zia|mimecast)-api\.md"
)
RFC = re.compile(rf"RFC\s?\d+\s{_SECTIONS}(?:(?:,\s?|\sand\s|\sor\s){_SECTIONS})*")
#: Names that look like a tag and are not one.
PRODUCT = re.compile(r"\b(?:Amazon|AWS) S3\b")


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of a Markdown file (code blocks left out)."""
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6}\s+(.*)", line)):
            found.add(anchor(heading.group(1)))
    return found


def files(places: tuple[str, ...]) -> list[Path]:
    """The text files under ``places`` (directories or files of the repository)."""
    out: list[Path] = []
    for place in places:
        path = ROOT / place
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and "__pycache__" not in p.parts
                and (p.suffix in TEXT_SUFFIXES or p.name.startswith("Dockerfile"))
            )
    return out


def references(path: Path) -> list[tuple[int, str, str]]:
    """(line, file, anchor) of every reference to the design notes in ``path``."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [
        (number, m.group(1), m.group(2))
        for number, line in enumerate(text.splitlines(), 1)
        for m in REFERENCE.finditer(line)
    ]


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def section_tags(text: str) -> list[str]:
    """The section tags of outside documents in ``text``."""
    return SECTION_TAG.findall(PRODUCT.sub("", RFC.sub("", text)))


def test_every_reference_to_the_design_notes_resolves() -> None:
    """Each ``docs/<file>.md#<anchor>`` in code, tests and docs names a file of docs/ and one of
    its headings."""
    found = [(p, *ref) for p in files(CITING) for ref in references(p)]
    assert len(found) > 50  # the walk found the references
    broken = [
        f"{p.relative_to(ROOT)}:{line}: docs/{doc}#{name}"
        for p, line, doc, name in found
        if not (ROOT / "docs" / doc).is_file() or name not in anchors(ROOT / "docs" / doc)
    ]
    assert not broken, "references to no heading:\n" + "\n".join(broken)


def test_no_section_tag_of_an_outside_document() -> None:
    """No code or doc cites a section of a document outside the repository (``(S13)``,
    ``reference §4``); they cite the design notes by path and heading instead."""
    tagged = [
        f"{p.relative_to(ROOT)}:{number}: {line.strip()}"
        for p in files(TAGGED)
        if p.resolve() != THIS
        for number, line in enumerate(lines_of(p), 1)
        if section_tags(line)
    ]
    assert not tagged, "cite docs/design.md#<heading> instead:\n" + "\n".join(tagged)


def test_the_checks_see_what_they_look_for() -> None:
    """The anchor follows GitHub's rule, and the tag finder sees every form of a tag and
    leaves references, names and RFC sections alone."""
    assert anchor("Mimecast's clock") == "mimecasts-clock"
    assert anchor("Limits of ZIA") == "limits-of-zia"
    assert anchor("Provenance and audit") == "provenance-and-audit"
    tags = "(S13) S5, S2.1 (S7, S13) reference §4 the server's side of §1a SPEC S14"
    assert section_tags(tags) == ["S13", "S5", "S2.1", "S7", "S13", "reference §", "§1a", "S14"]
    assert section_tags("as ``reference/zia-api.md`` describes") == ["reference/zia-api.md"]
    clean = "docs/design.md#expiry, S3Client, AWS_S3, Amazon S3, RFC 6749 §2.3.1 and §5, 1xS2"
    assert section_tags(clean) == []
    assert "expiry" in anchors(ROOT / "docs" / "design.md")
