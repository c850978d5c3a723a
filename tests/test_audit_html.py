"""``check --format html``: the audit as one page a reviewer opens from the CI artifacts, pictures inline."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageOps, ImageStat

from datacheck.findings import AuditReport, Finding, Severity
from datacheck.html_report import LISTED_PER_CHECK, PICTURED_PER_CHECK, THUMBNAILS_PER_FINDING, render_html
from retrain.core.dataset import IMAGE_EXTENSIONS
from retrain.core.display import printable
from tests.conftest import run_cli
from tests.defects import darkened, edited

PIXELS = ("--skip", "suspected_mislabel,shortcut_bias")  # the pixel checks only: no TensorFlow
HOSTILE = '<script>alert(1)<img src=x onerror=alert(2)> & "q" \'s\x1b.jpg'
UNDECODABLE = os.fsdecode(b"bad\xffname.jpg")  # a byte that is not UTF-8: a surrogate escape in Python
VOID = frozenset({"img", "br", "meta", "hr", "input", "link"})


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def all(self, tag: str, **attrs: str) -> list[Node]:
        """Descendants with this tag whose attributes hold these values (``class_`` matches one of the classes)."""
        found = []
        for child in self.children:
            classes = (child.attrs.get("class") or "").split()
            if child.tag == tag and all(
                value in classes if name == "class_" else child.attrs.get(name) == value
                for name, value in attrs.items()
            ):
                found.append(child)
            found += child.all(tag, **attrs)
        return found

    def content(self) -> str:
        """The text as a browser shows it (entities decoded)."""
        return "".join(
            self.text[:1] + [child.content() + tail for child, tail in zip(self.children, self.text[1:], strict=True)]
        )


class Page(HTMLParser):
    """A small tree of the page: what a browser would build from it, to assert on tags rather than on strings."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, text=[""])
        self.stack = [self.root]
        self.tags: list[Node] = []
        self.closed: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), text=[""])
        self.stack[-1].children.append(node)
        self.stack[-1].text.append("")
        self.tags.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        self.closed.append(tag)
        if tag not in VOID:
            assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>: the page is not well nested"
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].text[-1] += data

    def card(self, fingerprint: str) -> Node:
        (card,) = self.root.all("div", **{"data-fingerprint": fingerprint})
        return card


@dataclass
class PullRequest:
    after: Path
    page: Page
    html: str
    audit: dict  # the same audit as JSON
    exit_codes: tuple[int, int]  # html, json


@pytest.fixture(scope="module")
def pull_request(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> PullRequest:
    """Three classes of 12 photos audited as main; then a change adds two roses, a copy of a daisy under a hostile
    name, a daisy whose name is not UTF-8, a dark daisy and a corrupt rose, and moves two tulips to roses. Audited
    as HTML and JSON against main."""
    root = tmp_path_factory.mktemp("audit-html")
    before, after = root / "main", root / "branch"
    for label in ("daisy", "roses", "tulips"):
        (before / label).mkdir(parents=True)
        for photo in sorted((flowers_sample / label).glob("*.jpg"))[:12]:
            shutil.copy(photo, before / label / photo.name)
    baseline = root / "main.json"
    assert run_cli("check", before, *PIXELS, "--format", "json", "--output", baseline).exit_code in (0, 1)
    shutil.copytree(before, after)
    for index, photo in enumerate(sorted((flowers_sample / "roses").glob("*.jpg"))[20:22]):
        edited(photo, after / "roses" / f"new-rose-{index}.jpg", ImageOps.mirror)
    shutil.copy(sorted((after / "daisy").glob("*.jpg"))[0], after / "daisy" / HOSTILE)
    shutil.copy(sorted((flowers_sample / "daisy").glob("*.jpg"))[21], after / "daisy" / UNDECODABLE)
    edited(sorted((flowers_sample / "daisy").glob("*.jpg"))[20], after / "daisy" / "dark.jpg", darkened)
    (after / "roses" / "broken.jpg").write_bytes(b"not a JPEG at all")
    for photo in sorted((after / "tulips").glob("*.jpg"))[:2]:
        shutil.move(photo, after / "roses" / photo.name)
    options = (*PIXELS, "--baseline", baseline, "--fail-on", "warning", "--fail-on-new")
    page = root / "audit.html"
    html_run = run_cli("check", after, *options, "--format", "html", "--output", page)
    json_run = run_cli("check", after, *options, "--format", "json")
    text = page.read_text(encoding="utf-8")
    return PullRequest(after, Page(text), text, json.loads(json_run.stdout), (html_run.exit_code, json_run.exit_code))


def _image_files(after: Path, finding: dict) -> list[str]:
    """The finding's image files, by their names on disk (``paths_bytes`` where a name is not valid UTF-8)."""
    paths = [os.fsdecode(base64.b64decode(raw)) for raw in finding.get("paths_bytes", [])] or finding["paths"]
    return [p for p in paths if Path(p).suffix.lower() in IMAGE_EXTENSIONS and (after / p).is_file()]


def _uri_image(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_every_finding_appears_with_one_inline_picture_per_image(pull_request: PullRequest) -> None:
    page, audit = pull_request.page, pull_request.audit
    assert pull_request.exit_codes == (1, 1), "the page's audit gates like the JSON's"
    assert page.closed[-1] == "html" and len(page.stack) == 1
    for finding in audit["findings"]:
        card = page.card(finding["fingerprint"])
        expected = _image_files(pull_request.after, finding)[:THUMBNAILS_PER_FINDING]
        figures = card.all("figure")
        assert [figure.all("figcaption")[0].text[0] for figure in figures] == [printable(p) for p in expected], finding
        for figure in figures:
            assert len(figure.all("img")) + len(figure.all("div", class_="placeholder")) == 1
        assert ("marked" in card.attrs["class"].split()) == (finding["status"] == "caused")
    assert any(not card.all("figure") for card in page.root.all("div", class_="finding")), "class-level findings"
    # Self-contained: pictures are data URIs, links only lead within the page.
    assert all(tag.attrs["src"].startswith("data:image/jpeg;base64,") for tag in page.tags if "src" in tag.attrs)
    assert all(tag.attrs["href"].startswith("#check-") for tag in page.tags if "href" in tag.attrs)
    assert not [tag for tag in page.tags if tag.tag in ("script", "link", "iframe", "object")]
    gate = page.root.all("span", class_="fail")
    assert gate and "fails" in gate[0].content()


def test_thumbnails_are_the_photos(pull_request: PullRequest) -> None:
    """The dark daisy's thumbnail is that dark photo, shrunk: its mean brightness within a few levels of the file's."""
    dark = next(f for f in pull_request.audit["findings"] if f["check"] == "dark" and f["paths"] == ["daisy/dark.jpg"])
    (img,) = pull_request.page.card(dark["fingerprint"]).all("img")
    thumbnail = _uri_image(img.attrs["src"])
    assert max(thumbnail.size) <= 160
    with Image.open(pull_request.after / "daisy" / "dark.jpg") as photo:
        original = ImageStat.Stat(photo.convert("L")).mean[0]
    mean = ImageStat.Stat(thumbnail.convert("L")).mean[0]
    assert abs(mean - original) < 3 and mean < 40, (mean, original)


def test_a_hostile_file_name_is_text_never_markup(pull_request: PullRequest) -> None:
    page = pull_request.page
    shown = printable("daisy/" + HOSTILE)
    assert "<script>" not in pull_request.html and "\x1b" not in pull_request.html
    assert not [
        tag for tag in page.tags if tag.tag == "script" or "onerror" in tag.attrs or tag.attrs.get("src") == "x"
    ]
    copies = [f for f in pull_request.audit["findings"] if "daisy/" + HOSTILE in f["paths"]]
    assert {f["check"] for f in copies} >= {"exact_duplicates"}
    for finding in copies:
        captions = [caption.content() for caption in page.card(finding["fingerprint"]).all("figcaption")]
        assert any(caption.startswith(shown) for caption in captions), captions
    assert shown in [item.content() for item in page.root.all("ul", id="change-added")[0].all("li")]
    (undecodable,) = [f for f in pull_request.audit["findings"] if f["paths"] == ["daisy/bad\\xffname.jpg"]]
    (caption,) = page.card(undecodable["fingerprint"]).all("figcaption")
    assert caption.text[0] == "daisy/bad\\xffname.jpg"


def test_the_change_lists_exactly_the_added_and_moved_files(pull_request: PullRequest) -> None:
    page, diff = pull_request.page, pull_request.audit["diff"]
    (added,) = page.root.all("ul", id="change-added")
    assert [item.content() for item in added.all("li")] == sorted(
        printable(p)
        for p in [
            "roses/new-rose-0.jpg", "roses/new-rose-1.jpg", "daisy/" + HOSTILE, "daisy/dark.jpg", "roses/broken.jpg"
        ]
    )  # fmt: skip
    (moved,) = page.root.all("ul", id="change-moved")
    assert len(diff["moved"]) == 2
    assert [item.content() for item in moved.all("li")] == [
        f"tulips → roses: {move['source']} → {move['target']}" for move in diff["moved"]
    ]
    assert all(move["source"].startswith("tulips/") and move["target"].startswith("roses/") for move in diff["moved"])
    (copies,) = page.root.all("ul", id="change-copies")
    assert [item.content().split(" copies ")[0] for item in copies.all("li")] == [printable("daisy/" + HOSTILE)]
    change = page.root.all("p", class_="change")[0].content()
    assert change == pull_request.audit["summary"]["change"]
    assert not page.root.all("ul", id="change-removed"), "nothing was removed: a move is not an add plus a remove"


def test_a_corrupt_file_shows_a_placeholder_with_the_reason(pull_request: PullRequest) -> None:
    (corrupt,) = [f for f in pull_request.audit["findings"] if f["paths"] == ["roses/broken.jpg"]]
    card = pull_request.page.card(corrupt["fingerprint"])
    assert not card.all("img")
    (placeholder,) = card.all("div", class_="placeholder")
    assert placeholder.content() == f"no picture: {corrupt['details']['reason']}"
    assert corrupt["status"] == "caused" and "marked" in card.attrs["class"].split()


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_output_to_an_unwritable_place_is_one_error_line(flowers_sample: Path, tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    if where == "a folder":
        blocker.mkdir()
        target = blocker
    else:
        blocker.write_text("a file")
        target = blocker / "audit.html"
    before = sorted(tmp_path.rglob("*"))
    run = run_cli("check", flowers_sample, "--only", "too_few_images", "--format", "html", "--output", target)
    assert run.exit_code == 2, run.stdout + run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: cannot write the report") and "Traceback" not in run.stdout + run.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_a_page_of_thousands_of_findings_stays_bounded(flowers_sample: Path) -> None:
    """Findings past the cap are one line each, then left out, and the page says how many; a big group shows the
    first few pictures. Only the pictured files are decoded."""
    photos = [p.relative_to(flowers_sample).as_posix() for p in sorted(flowers_sample.glob("*/*.jpg"))]
    many = LISTED_PER_CHECK + 50
    findings = [
        Finding("dark", Severity.INFO, (photos[i % len(photos)],), "dark", {"highlights": 0.1}, f"dark:{i}")
        for i in range(many)
    ]
    group = Finding("near_duplicates", Severity.WARNING, tuple(photos[:10]), "copies", {}, "near_duplicates:0")
    report = AuditReport(str(flowers_sample), [group, *findings], len(photos), {}, ["dark"], 1.0)
    page = Page(render_html(report))
    (dark,) = page.root.all("section", id="check-dark")
    assert len(dark.all("div", class_="finding")) == PICTURED_PER_CHECK
    assert len(dark.all("li")) == LISTED_PER_CHECK - PICTURED_PER_CHECK
    notes = [note.content() for note in dark.all("p", class_="more")]
    assert notes[0] == f"{many - PICTURED_PER_CHECK} more without pictures:"
    assert notes[1].startswith(f"{many - LISTED_PER_CHECK} more findings not shown here")
    card = page.card("near_duplicates:0")
    assert len(card.all("img")) == THUMBNAILS_PER_FINDING
    left = [note.content() for note in card.all("p", class_="more")]
    assert left == [f"{10 - THUMBNAILS_PER_FINDING} more images not pictured (named above)"]
    assert sum(1 for tag in page.tags if tag.tag == "img") == PICTURED_PER_CHECK + THUMBNAILS_PER_FINDING
