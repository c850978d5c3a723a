"""``check --format html``: the audit as one page a reviewer opens from the CI artifacts, pictures inline."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageOps, ImageStat

from datacheck.audit_formats import plural
from datacheck.findings import AuditReport, Finding, Severity
from datacheck.html_report import (
    LISTED_FINDINGS,
    PICTURE_BYTES,
    THUMBNAIL_SIDE,
    THUMBNAILS_PER_FINDING,
    _prose,
    render_html,
)
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
    path: Path  # audit.html
    page: Page
    html: str
    audit: dict  # the same audit as JSON
    exit_codes: tuple[int, int]  # html, json


@pytest.fixture(scope="module")
def pull_request(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> PullRequest:
    """Three classes of 12 photos audited as main; then a change adds two roses, a copy of a daisy under a hostile
    name, a mirrored copy of another daisy, a daisy whose name is not UTF-8, a dark daisy and a corrupt rose, and moves
    two tulips to roses. Audited as HTML and JSON against main."""
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
    edited(sorted((after / "daisy").glob("*.jpg"))[3], after / "daisy" / "mirrored.jpg", ImageOps.mirror)
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
    return PullRequest(
        after, page, Page(text), text, json.loads(json_run.stdout), (html_run.exit_code, json_run.exit_code)
    )


def _image_files(after: Path, finding: dict) -> list[str]:
    """The finding's image files, by their names on disk (``paths_bytes`` where a name is not valid UTF-8)."""
    paths = [os.fsdecode(base64.b64decode(raw)) for raw in finding.get("paths_bytes", [])] or finding["paths"]
    return [p for p in paths if Path(p).suffix.lower() in IMAGE_EXTENSIONS and (after / p).is_file()]


def _uri_image(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def _browser_dom(page: Path, fragment: str) -> Page:
    """The page as headless Chromium leaves it after its script ran, opened at ``#fragment``."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no Chromium to run the page's script")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"{page.as_uri()}#{fragment}"]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    return Page(dom)


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
        assert card.attrs["data-status"] == finding["status"] and card.attrs["data-check"] == finding["check"]
    assert any(not card.all("figure") for card in page.root.all("div", class_="finding")), "class-level findings"
    # Self-contained: pictures are data URIs loaded lazily, links only lead within the page, the one script is inline.
    images = [tag for tag in page.tags if tag.tag == "img"]
    assert images and all(tag.attrs["src"].startswith("data:image/jpeg;base64,") for tag in images)
    assert all(tag.attrs.get("loading") == "lazy" for tag in images)
    assert all(tag.attrs["href"].startswith(("#check-", "#class=")) for tag in page.tags if "href" in tag.attrs)
    assert not [
        tag for tag in page.tags if tag.tag in ("link", "iframe", "object") or "src" in tag.attrs and tag.tag != "img"
    ]
    (script,) = [tag for tag in page.tags if tag.tag == "script"]
    assert not script.attrs and "http" not in script.content() and "fetch(" not in script.content()


def test_the_header_says_the_gate_verdict_and_the_change_first(pull_request: PullRequest) -> None:
    page, summary = pull_request.page, pull_request.audit["summary"]
    (verdict,) = page.root.all("div", id="verdict")
    text = " ".join(verdict.content().split())
    assert "failed" in verdict.attrs["class"].split() and text.startswith("FAILED")
    failing = summary["caused"]["warning"] + summary["caused"]["error"]
    assert f"--fail-on warning --fail-on-new: {failing} findings the change caused at or above warning" in text
    counts = summary["findings"]
    assert f"{plural(counts['error'], 'error')}, {plural(counts['warning'], 'warning')}" in text
    (change,) = page.root.all("p", class_="change")
    assert change.content() == summary["change"]
    facts = " ".join(fact.content() for fact in page.root.all("div", class_="facts"))
    caused = summary["caused"]
    severities = [plural(caused[severity], noun) for severity, noun in (("error", "error"), ("warning", "warning"))]
    assert f"caused by the change {', '.join(severities)}" in facts
    assert f"shifted on untouched files {summary['shifted']['appeared']} appeared" in facts
    assert not page.root.all("p", id="picture-cap"), "a small audit pictures everything"


def test_the_class_overview_counts_images_splits_and_findings(pull_request: PullRequest) -> None:
    audit = pull_request.audit
    (table,) = pull_request.page.root.all("table", id="classes")
    rows = [[cell.content() for cell in row.all("td")] for row in table.all("tr")[1:]]
    header = [cell.content() for cell in table.all("th")]
    splits = header[2:-2]
    assert header[:2] == ["class", "images"] and header[-2:] == ["findings", "caused"]
    assert set(splits) == {entry["split"] for entry in audit["manifest"]} and splits[0] == "training"
    for label, images, *counts, findings, caused in rows:
        entries = [entry for entry in audit["manifest"] if entry["label"] == label]
        assert int(images) == audit["summary"]["classes"][label]
        assert [int(n) for n in counts] == [sum(e["split"] == split for e in entries) for split in splits]
        mine = [f for f in audit["findings"] if any(p.split("/")[0] == label for p in f["paths"])]
        assert int(findings) == len(mine), label
        assert int(caused) == sum(f["status"] == "caused" for f in mine), label
    assert [row[0] for row in rows] == ["daisy", "roses", "tulips"]


def test_look_alikes_side_by_side_say_how_they_matched_in_words(pull_request: PullRequest) -> None:
    """The mirrored daisy and its original: two pictures in one card, and a sentence, never a Python structure."""
    (group,) = [f for f in pull_request.audit["findings"] if f["check"] == "near_duplicates"]
    assert "daisy/mirrored.jpg" in group["paths"]
    card = pull_request.page.card(group["fingerprint"])
    assert len(card.all("img")) == len(group["paths"]) == 2
    (words,) = [item.content() for item in card.all("ul", class_="how")[0].all("li")]
    pair = group["details"]["pairs"][0]
    assert words.startswith(f"{pair['paths'][0].split('/')[-1]} ~ {pair['paths'][1].split('/')[-1]} one picture: ")
    assert f"{pair['inliers']} keypoints agree" in words and "mirrored" in words and "found by" in words
    shown = pull_request.page.root.content()
    assert not any(leak in shown for leak in ("{'", "['", "':", "None", "True", "False")), "a Python repr leaked"


def test_thumbnails_are_the_photos(pull_request: PullRequest) -> None:
    """The dark daisy's thumbnail is that dark photo, shrunk: its mean brightness within a few levels of the file's."""
    dark = next(f for f in pull_request.audit["findings"] if f["check"] == "dark" and f["paths"] == ["daisy/dark.jpg"])
    (img,) = pull_request.page.card(dark["fingerprint"]).all("img")
    thumbnail = _uri_image(img.attrs["src"])
    assert max(thumbnail.size) == THUMBNAIL_SIDE
    with Image.open(pull_request.after / "daisy" / "dark.jpg") as photo:
        original = ImageStat.Stat(photo.convert("L")).mean[0]
    mean = ImageStat.Stat(thumbnail.convert("L")).mean[0]
    assert abs(mean - original) < 3 and mean < 40, (mean, original)


def test_a_hostile_file_name_is_text_never_markup(pull_request: PullRequest) -> None:
    page = pull_request.page
    shown = printable("daisy/" + HOSTILE)
    assert "<script>alert" not in pull_request.html and "\x1b" not in pull_request.html
    assert [tag.tag for tag in page.tags if tag.tag == "script"] == ["script"], "only the page's own script"
    assert not [tag for tag in page.tags if "onerror" in tag.attrs or tag.attrs.get("src") == "x"]
    copies = [f for f in pull_request.audit["findings"] if "daisy/" + HOSTILE in f["paths"]]
    assert {f["check"] for f in copies} >= {"exact_duplicates"}
    for finding in copies:
        captions = [caption.content() for caption in page.card(finding["fingerprint"]).all("figcaption")]
        assert any(caption.startswith(shown) for caption in captions), captions
    assert shown in [item.content() for item in page.root.all("ul", id="change-added")[0].all("figcaption")]
    (undecodable,) = [f for f in pull_request.audit["findings"] if f["paths"] == ["daisy/bad\\xffname.jpg"]]
    (caption,) = page.card(undecodable["fingerprint"]).all("figcaption")
    assert caption.text[0] == "daisy/bad\\xffname.jpg"
    assert json.loads(page.card(copies[0]["fingerprint"]).attrs["data-classes"]) == ["daisy"]


def test_the_change_pictures_exactly_the_added_and_moved_files(pull_request: PullRequest) -> None:
    page, diff = pull_request.page, pull_request.audit["diff"]
    (added,) = page.root.all("ul", id="change-added")
    assert [item.all("figcaption")[0].content() for item in added.all("li")] == sorted(
        printable(p)
        for p in [
            "roses/new-rose-0.jpg", "roses/new-rose-1.jpg", "daisy/" + HOSTILE, "daisy/mirrored.jpg",
            "daisy/dark.jpg", "roses/broken.jpg",
        ]
    )  # fmt: skip
    (broken,) = [item for item in added.all("li") if not item.all("img")]
    assert broken.all("figcaption")[0].content() == "roses/broken.jpg"
    assert broken.all("div", class_="placeholder")[0].content() == "no picture: the file cannot be decoded"
    (moved,) = page.root.all("ul", id="change-moved")
    assert len(diff["moved"]) == 2
    for item, move in zip(moved.all("li"), diff["moved"], strict=True):
        assert item.all("b")[0].content() == "tulips → roses" and item.content().endswith(move["target"])
        assert item.all("img")
    assert all(move["source"].startswith("tulips/") and move["target"].startswith("roses/") for move in diff["moved"])
    (copies,) = page.root.all("ul", id="change-copies")
    assert [item.content().split(" copies ")[0] for item in copies.all("li")] == [
        printable("daisy/" + HOSTILE),
        "daisy/mirrored.jpg",
    ]
    assert not page.root.all("ul", id="change-removed"), "nothing was removed: a move is not an add plus a remove"


def test_a_corrupt_file_shows_a_placeholder_with_the_reason(pull_request: PullRequest) -> None:
    (corrupt,) = [f for f in pull_request.audit["findings"] if f["paths"] == ["roses/broken.jpg"]]
    card = pull_request.page.card(corrupt["fingerprint"])
    assert not card.all("img")
    (placeholder,) = card.all("div", class_="placeholder")
    assert placeholder.content() == f"no picture: {corrupt['details']['reason']}"
    assert corrupt["status"] == "caused" and "marked" in card.attrs["class"].split()


def test_without_javascript_everything_shows_and_the_filters_stay_hidden(pull_request: PullRequest) -> None:
    page = pull_request.page
    (form,) = page.root.all("form", id="filters")
    assert "hidden" in form.attrs
    assert not [tag for tag in page.tags if "hidden" in tag.attrs and tag is not form]
    checks = [option.attrs["value"] for option in form.all("select", name="check")[0].all("option")]
    assert checks == ["", *dict.fromkeys(f["check"] for f in pull_request.audit["findings"])]


def test_the_filters_read_the_address_and_hide_the_rest(pull_request: PullRequest) -> None:
    """Opened at #class=roses&new=1 in a browser: only the findings the change caused in roses stay visible, sorted
    as the page says, and the count says so."""
    dom = _browser_dom(pull_request.path, "class=roses&new=1&sort=score")
    (form,) = dom.root.all("form", id="filters")
    assert "hidden" not in form.attrs
    visible = [
        card.attrs["data-fingerprint"] for card in dom.root.all("div", class_="finding") if "hidden" not in card.attrs
    ]
    expected = [
        f["fingerprint"]
        for f in pull_request.audit["findings"]
        if f["status"] == "caused" and any(p.startswith("roses/") for p in f["paths"])
    ]
    assert expected and sorted(visible) == sorted(expected)
    total = len(pull_request.audit["findings"])
    assert dom.root.all("span", id="shown")[0].content() == f"showing {len(expected)} of {total} findings"
    searched = _browser_dom(pull_request.path, "q=MIRRORED")
    shown = [card for card in searched.root.all("div", class_="finding") if "hidden" not in card.attrs]
    assert shown and all("mirrored" in card.content() for card in shown)


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


def test_five_thousand_findings_make_a_page_under_10_mb_that_says_what_it_left_out(flowers_sample: Path) -> None:
    """Every finding gets a card; pictures go to each check's findings in turn until the budget is spent, and the
    header says how many were left without pictures."""
    photos = [p.relative_to(flowers_sample).as_posix() for p in sorted(flowers_sample.glob("*/*.jpg"))]
    checks = ("dark", "grayscale", "near_duplicates", "blurry")
    findings = []
    for index in range(5000):
        check = checks[index % len(checks)]
        size = 4 if check == "near_duplicates" else 1
        paths = tuple(photos[(index * 7 + offset) % len(photos)] for offset in range(size))
        findings.append(Finding(check, Severity.WARNING, paths, f"finding {index}", {"value": 0.1}, f"{check}:{index}"))
    report = AuditReport(str(flowers_sample), findings, len(photos), {}, list(checks), 1.0)
    text = render_html(report)
    assert len(text.encode("utf-8")) < 10_000_000
    page = Page(text)
    cards = page.root.all("div", class_="finding")
    assert len(cards) == min(LISTED_FINDINGS, 5000)
    pictured = [card for card in cards if card.all("img")]
    pictures = sum(len(card.all("img")) for card in pictured)
    embedded = sum(len(img.attrs["src"]) for card in pictured for img in card.all("img"))
    assert embedded <= PICTURE_BYTES and 0 < len(pictured) < len(cards)
    (cap,) = page.root.all("p", id="picture-cap")
    assert cap.content().startswith(
        f"Thumbnails stop at {PICTURE_BYTES / 1e6:.0f} MB: {pictures} pictured; {len(cards) - len(pictured)} findings"
    )
    for check in checks:
        (section,) = page.root.all("section", id=f"check-{check}")
        mine = section.all("div", class_="finding")
        assert mine[0].all("img"), f"{check}: the first findings of every check are pictured"
        assert mine[-1].all("p", class_="more")[0].content().startswith("not pictured: the page's")
        last = next(finding for finding in findings if finding.fingerprint == mine[-1].attrs["data-fingerprint"])
        assert mine[-1].all("p", class_="paths")[0].content() == ", ".join(last.paths)


def test_sorting_by_score_puts_the_strongest_first_and_class_names_stay_text(
    flowers_sample: Path, tmp_path: Path
) -> None:
    """Outliers scored 1, 3 and 2 in a class whose name is markup: sorted by score in the browser they read 3, 2, 1;
    the class is a filter option and a link by its name, never a tag."""
    photos = [p.relative_to(flowers_sample).as_posix() for p in sorted(flowers_sample.glob("daisy/*.jpg"))[:3]]
    label = '<b>daisy"s'
    findings = [
        Finding("outlier", Severity.WARNING, (photo,), "unlike the others", {"score": score}, f"outlier:{score}")
        for photo, score in zip(photos, (1.0, 3.0, 2.0), strict=True)
    ] + [Finding("too_few_images", Severity.WARNING, (label,), "add photos", {"label": label}, "too_few_images:0")]
    report = AuditReport(str(flowers_sample), findings, 3, {label: 3}, ["outlier", "too_few_images"], 1.0)
    page_file = tmp_path / "audit.html"
    page_file.write_text(render_html(report), encoding="utf-8")
    text = page_file.read_text(encoding="utf-8")
    page = Page(text)
    assert "<b>daisy" not in text and not [tag for tag in page.tags if tag.tag == "b" and tag.children]
    assert [option.attrs["value"] for option in page.root.all("select", name="class")[0].all("option")] == ["", label]
    (row,) = page.root.all("table", id="classes")[0].all("a")
    assert row.content() == label and row.attrs["href"] == "#class=%3Cb%3Edaisy%22s"
    assert json.loads(page.card("too_few_images:0").attrs["data-classes"]) == [label]
    dom = _browser_dom(page_file, "sort=score")
    (section,) = dom.root.all("section", id="check-outlier")
    assert [card.attrs["data-fingerprint"] for card in section.all("div", class_="finding")] == [
        "outlier:3.0",
        "outlier:2.0",
        "outlier:1.0",
    ]
    by_class = _browser_dom(page_file, row.attrs["href"][1:])
    shown = [
        card.attrs["data-fingerprint"]
        for card in by_class.root.all("div", class_="finding")
        if "hidden" not in card.attrs
    ]
    assert shown == ["too_few_images:0"]


def test_code_spans_in_messages_are_drawn_as_code_and_stay_escaped() -> None:
    """The leakage advice names `_nohash_` as the terminal shows it; on the page that is code, never raw backticks,
    and markup inside a span (a hostile file name) is still text."""
    shown = str(_prose("name them alike up to `_nohash_` (`<img src=x onerror=alert(1)>.jpg`)"))
    assert shown == (
        "name them alike up to <code>_nohash_</code> (<code>&lt;img src=x onerror=alert(1)&gt;.jpg</code>)"
    )
    assert "`" not in shown
