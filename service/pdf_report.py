"""The PDF report for editors: one image, or a whole case, printed from the same content as the page and the ZIP.

Everything shown comes from :func:`service.reports.image_report` and :func:`service.reports.batch_summary`
(verdicts and scores are never derived again here), in the words of the web page (:mod:`api.web.words`),
so the page, the JSON, the dossier and the PDF cannot disagree.

Text a file brings (names, EXIF, XMP, software strings) goes through :func:`text` before it reaches a
reportlab ``Paragraph``, whose mini-language would otherwise read ``<font>`` or ``<b>`` in a file's
metadata as formatting (or fail on a stray ``<``).

Memory: pictures are fetched from storage only when their page is laid out (:class:`StoredPicture`),
downscaled to :data:`PICTURE_SIDE` and re-encoded as JPEG, which reportlab embeds as it is
(DCTDecode, no decode); the document holds those compressed pictures until it is written, about
100-200 KB each, so a case's PDF needs memory in proportion to its size in the file, never its
pictures decoded.

Fonts: DejaVu Sans, the TrueType family matplotlib (a dependency of the engine) ships, embedded
as subsets: a file name or a caption in Latin, Greek or Cyrillic script reads as written (the PDF
core fonts print Latin-1 only). Hebrew and Arabic letters are printed left to right and
unshaped (reportlab lays out no right-to-left text), and CJK characters have no glyph in it.
"""

import io
import math
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from api.web import words
from service.models import Case, Image
from service.reports import batch_summary, image_report
from service.storage import Storage

# Streams in binary, not ASCII85: reportlab's pure-Python ASCII85 encoder (without the optional rl_accel
# C extension) took more time than everything else together on JPEG pictures. Process-wide, on purpose:
# this module is the only user of reportlab.
rl_config.useA85 = 0

#: Long side, in pixels, of the overlay printed per image: sharp at the printed width (about 17 cm, 150 dpi).
PICTURE_SIDE = 1024
PICTURE_QUALITY = 85
#: Longest text of one table cell or paragraph: reportlab cannot split a cell across pages.
MAX_TEXT = 1500
FLAGGED = 50.0

#: matplotlib's copy of DejaVu Sans (found without importing matplotlib itself).
_FONTS = Path(find_spec("matplotlib").origin).parent / "mpl-data" / "fonts" / "ttf"  # type: ignore[arg-type, union-attr]
FONT, BOLD = "DejaVuSans", "DejaVuSans-Bold"
for _name in (FONT, BOLD):
    pdfmetrics.registerFont(TTFont(_name, str(_FONTS / f"{_name}.ttf")))
pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=FONT, boldItalic=BOLD)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontName=FONT, fontSize=9, leading=11.5)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444"))
CELL = ParagraphStyle("cell", parent=BODY, fontSize=8, leading=10)
TITLE = ParagraphStyle("title", parent=_STYLES["Title"], fontName=BOLD, fontSize=18, leading=22, alignment=0)
HEADING = ParagraphStyle("heading", parent=_STYLES["Heading2"], fontName=BOLD, fontSize=13, leading=16, spaceBefore=8)
SUBHEADING = ParagraphStyle("subheading", parent=_STYLES["Heading3"], fontName=BOLD, fontSize=10.5, leading=13, spaceBefore=6)
VERDICT = ParagraphStyle("verdict", parent=BODY, fontName=BOLD, fontSize=12, leading=15)
GRID = TableStyle(
    [
        ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#bbbbbb")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
)
FACTS = TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, -1), 1)])


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """``value`` as Paragraph-safe text: markup escaped, control characters dropped, cut at ``limit``."""
    shown = "" if value is None else _CONTROL.sub("", str(value))
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return escape(shown)


def _p(value: Any, style: ParagraphStyle = BODY, limit: int = MAX_TEXT) -> Paragraph:
    return Paragraph(text(value, limit), style)


@cache
def engine_version() -> str:
    """The installed package's version: what ran the analysis, as far as this process can tell."""
    try:
        return metadata.version("image-forensics")
    except metadata.PackageNotFoundError:
        return "unknown"


@cache
def engine_commit() -> str:
    """The git commit of the code: ``FORENSICS_COMMIT`` (set by a build without ``.git``), else ``git rev-parse``, else unknown."""
    if commit := os.environ.get("FORENSICS_COMMIT", "").strip():
        return commit
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


class StoredPicture(Flowable):
    """A stored picture (the overlay), fetched, downscaled and embedded only when its page is drawn.

    Its size on the page comes from the image's dimensions, known without reading the file, so a
    case's story holds no picture data until reportlab draws each in turn.
    """

    def __init__(self, storage: Storage, key: str, width: int, height: int, max_width: float, max_height: float) -> None:
        super().__init__()
        self.storage, self.key = storage, key
        factor = min(max_width / width, max_height / height)
        self.drawWidth, self.drawHeight = width * factor, height * factor

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return self.drawWidth, self.drawHeight

    def draw(self) -> None:
        try:
            jpeg = picture_jpeg(self.storage.get_bytes(self.key))
        except (KeyError, OSError, ValueError):  # a missing or unreadable rendition: say so, keep the report
            self.canv.setFont(FONT, 9)
            self.canv.drawString(0, self.drawHeight / 2, "The overlay could not be read from storage.")
            return
        self.canv.drawImage(ImageReader(io.BytesIO(jpeg)), 0, 0, self.drawWidth, self.drawHeight)


def picture_jpeg(data: bytes, side: int = PICTURE_SIDE) -> bytes:
    """JPEG bytes of a stored picture with its long side at most ``side`` (re-encoded only when it must be)."""
    with PILImage.open(io.BytesIO(data)) as picture:
        if picture.format == "JPEG" and max(picture.size) <= side and picture.mode in ("RGB", "L"):
            return data
        factor = side / max(picture.size)
        if factor < 1:  # JPEG: decode at the smallest scale (1/2, 1/4, 1/8) still at least the target size
            picture.draft("RGB", (math.ceil(picture.width * factor), math.ceil(picture.height * factor)))
        rgb = picture.convert("RGB")
    rgb.thumbnail((side, side), PILImage.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=PICTURE_QUALITY, optimize=False)
    return out.getvalue()


def _facts(rows: Iterable[tuple[str, Any]], width: float) -> Table | None:
    """Label/value lines, leaving out values that are empty."""
    kept = [[_p(label, SMALL), _p(value, CELL)] for label, value in rows if value not in (None, "", [], {})]
    if not kept:
        return None
    table = Table(kept, colWidths=[32 * mm, width - 32 * mm], hAlign="LEFT")
    table.setStyle(FACTS)
    return table


def _metadata_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """The page's metadata facts (camera, dates, software, GPS), in its words."""
    meta = report.get("metadata") or {}
    info = report.get("image") or {}
    exposure = meta.get("exposure") or {}
    dates = meta.get("dates") or {}
    gps = meta.get("gps") or {}
    rows: list[tuple[str, Any]] = [
        ("Camera", " ".join(str(v) for v in (meta.get("make"), meta.get("model")) if v)),
        ("Lens", meta.get("lens")),
        ("Serial number", meta.get("camera_serial")),
        (
            "Exposure",
            " · ".join(
                part
                for part in (
                    exposure.get("exposure_time") and f"{exposure['exposure_time']} s",
                    exposure.get("f_number") and f"f/{exposure['f_number']}",
                    exposure.get("iso") and f"ISO {exposure['iso']}",
                    exposure.get("focal_length_mm") and f"{exposure['focal_length_mm']} mm",
                )
                if part
            ),
        ),
        ("Taken", dates.get("date_time_original")),
        ("Digitised", dates.get("create_date")),
        ("Modified", dates.get("modify_date")),
        ("XMP modified", dates.get("xmp_modify_date")),
    ]
    for software in meta.get("software") or []:
        if isinstance(software, dict):
            rows.append(("Software", f"{software.get('value')}" + (f" ({software['editor']})" if software.get("editor") else "")))
    if gps.get("latitude") is not None:
        where = f"{gps.get('latitude')}, {gps.get('longitude')}"
        if gps.get("altitude_m") is not None:
            where += f" · {gps['altitude_m']} m"
        flags = gps.get("flags") or []
        rows.append(("GPS", where + (f" ({'; '.join(map(str, flags))})" if flags else "")))
    rows.append(("Orientation", (meta.get("orientation") or {}).get("meaning")))
    if meta.get("stripped"):
        rows.append(("EXIF", "none: the metadata was stripped"))
    fmt = str(info.get("format") or "").upper()
    if info.get("width"):
        fmt += f" · {info['width']} × {info['height']} px"
    rows += [("Format", fmt), ("Size", words.size(info.get("bytes")))]
    return rows


def _hash_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    hashes = (report.get("metadata") or {}).get("hashes") or {}
    info = report.get("image") or {}
    return [("SHA-256", report.get("sha256")), ("MD5", hashes.get("md5") or info.get("md5")), ("Perceptual hash", hashes.get("phash"))]


def _findings_table(report: dict[str, Any], width: float) -> Table:
    rows: list[list[Any]] = [[_p("Method", SMALL), _p("Version", SMALL), _p("Status", SMALL), _p("Score", SMALL), _p("Finding", SMALL)]]
    for finding in report.get("findings", []):
        said = f"<b>{text(finding.get('label'), 200)}</b>"
        if finding.get("summary"):
            said += "<br/>" + text(finding["summary"])
        rows.append(
            [
                _p(finding.get("method"), CELL),
                _p(finding.get("version"), CELL),
                _p(finding.get("status"), CELL),
                _p(words.score(finding.get("score")), CELL),
                Paragraph(said, CELL),
            ]
        )
    table = Table(rows, colWidths=[26 * mm, 14 * mm, 17 * mm, 11 * mm, width - 68 * mm], repeatRows=1, hAlign="LEFT")
    table.setStyle(GRID)
    return table


def _evidence_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Method versions and, for learned methods, the model's name, version and SHA-256 prefix."""
    rows = []
    for finding in report.get("findings", []):
        model = (finding.get("details") or {}).get("model")
        model_text = ""
        if isinstance(model, dict):
            model_text = f"{model.get('name', '')} {model.get('version', '')} · SHA-256 {model.get('sha256', '')}".strip()
        rows.append([_p(finding.get("method"), CELL), _p(finding.get("version"), CELL), _p(model_text, CELL)])
    return rows


def _listing(items: Any, describe: Callable[[Any], str]) -> list[Paragraph]:
    """Anomalies or near-duplicates, a list of dicts or strings, one line each (at most 50)."""
    if isinstance(items, dict):
        items = [{"name": k, "detail": v} for k, v in items.items()]
    if not isinstance(items, list):
        items = [items]
    shown = [_p(describe(item), CELL) for item in items[:50]]
    if len(items) > 50:
        shown.append(_p(f"… {len(items) - 50} more in the JSON report", SMALL))
    return shown


def _describe(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    return "; ".join(f"{k}: {words.measure(v)}" for k, v in item.items() if v not in (None, "", [], {}))


def image_story(report: dict[str, Any], storage: Storage, overlay_key: str | None, width: float, height: float) -> list[Flowable]:
    """One image's section, from its report dict (``image_report``) and its stored overlay."""
    story: list[Flowable] = [Paragraph(text(report.get("file"), 300), HEADING)]
    scored = report.get("tamper_score")
    verdict = words.verdict(report.get("verdict"))
    line = f"{verdict} · tamper score {words.score(scored)} of 100"
    if report.get("confidence"):
        line += f", {report['confidence']} confidence"
    colour = "#b00020" if scored is not None and scored >= FLAGGED else "#1b5e20" if scored is not None else "#444444"
    story.append(Paragraph(f'<font color="{colour}">{text(line)}</font>', VERDICT))
    if report.get("status") != "completed":
        story.append(_p(f"Status: {words.status(report.get('status'))}", BODY))
    if error := report.get("error"):
        story.append(_p(f"{words.problem(error.get('code'))} {error.get('detail') or ''}", BODY))
    for key in ("summary", "recommendation"):
        if report.get(key):
            story.append(_p(report[key], BODY))
    for title, key in (("Issues", "issues"), ("In its favour", "positives")):
        if report.get(key):
            story.append(Paragraph(f"<b>{title}</b>", SMALL))
            story += [_p(f"• {item}", CELL) for item in report[key][:30]]
    info = report.get("image") or {}
    if overlay_key and info.get("width") and info.get("height"):
        story += [Spacer(1, 3 * mm), StoredPicture(storage, overlay_key, info["width"], info["height"], width, height * 0.55)]
        story.append(_p("The fused map over the picture: the brighter the colour, the more suspicious the area.", SMALL))
    if contributions := report.get("contributions"):
        story.append(Paragraph("What drove the score", SUBHEADING))
        bias = report.get("bias")
        story.append(
            _p(
                "The tamper score is the logistic of a bias"
                + (f" ({bias:.2f})" if isinstance(bias, int | float) else "")
                + " plus each method's contribution below, in log-odds: positive values push towards “manipulated”.",
                SMALL,
            )
        )
        ranked = sorted(contributions.items(), key=lambda kv: kv[1] if isinstance(kv[1], int | float) else 0, reverse=True)
        table = _facts([(method, f"{value:+.2f}" if isinstance(value, int | float) else value) for method, value in ranked], width)
        if table is not None:
            story.append(table)
    if report.get("findings"):
        story += [Paragraph("Findings", SUBHEADING), _findings_table(report, width)]
    story.append(Paragraph("Metadata", SUBHEADING))
    story.append(_facts(_metadata_rows(report), width) or _p("No metadata was read.", SMALL))
    # Printed only when the report lists some: an empty list may mean "not looked up" (a caller that
    # did not ask for them), which the PDF must not print as "none found".
    for title, key in (("Anomalies", "anomalies"), ("Near-duplicates", "near_duplicates")):
        if report.get(key):
            story += [Paragraph(title, SUBHEADING), *_listing(report[key], _describe)]
    story.append(Paragraph("Evidence chain", SUBHEADING))
    story.append(_facts(_hash_rows(report), width) or _p("No hashes.", SMALL))
    if evidence := _evidence_rows(report):
        table = Table(
            [[_p("Method", SMALL), _p("Version", SMALL), _p("Model", SMALL)], *evidence], colWidths=[30 * mm, 18 * mm, width - 48 * mm]
        )
        table.setStyle(GRID)
        story += [Spacer(1, 2 * mm), table]
    story.append(
        _p(
            f"Analysed {words.when(report.get('created_at'))} – {words.when(report.get('completed_at'))}"
            f" · image id {report.get('id')} · case id {report.get('case_id')}",
            SMALL,
        )
    )
    return story


def _colophon() -> Paragraph:
    return _p(f"Image forensics engine {engine_version()} · commit {engine_commit()}", SMALL)


def _document(out: IO[bytes], title: str, compress: bool) -> SimpleDocTemplate:
    return SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=title,
        author="Image forensics",
        pageCompression=1 if compress else 0,
        invariant=1,
    )


def _footer(label: str) -> Callable[[Any, Any], None]:
    def draw(canvas: Any, document: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.setFillColor(colors.HexColor("#666666"))
        shown = _CONTROL.sub("", label)[:120]
        canvas.drawString(document.leftMargin, 9 * mm, f"{shown} · engine {engine_version()} · commit {engine_commit()[:12]}")
        canvas.drawRightString(A4[0] - document.rightMargin, 9 * mm, f"page {document.page}")
        canvas.restoreState()

    return draw


def write_image_pdf(image: Image, storage: Storage, out: IO[bytes], *, extra: dict[str, Any] | None = None, compress: bool = True) -> None:
    """One image's PDF. ``image`` must have its findings loaded; ``extra`` adds report keys the caller
    looked up elsewhere (``near_duplicates``, ``anomalies``), as the JSON route adds them to the same report."""
    report = image_report(image, lambda key: None) | (extra or {})
    doc = _document(out, f"Forensic report: {image.filename}", compress)
    story: list[Flowable] = [_p("Image forensics report", SMALL)]
    story += image_story(report, storage, image.overlay_key, doc.width, doc.height)
    story += [Spacer(1, 4 * mm), _colophon()]
    footer = _footer(image.filename)
    doc.build(story, onFirstPage=footer, onLaterPages=footer)


def _flagged_first(case: Case) -> list[Image]:
    """The page's order: flagged images first (highest score first), then the rest in upload order."""

    def key(image: Image) -> tuple[int, float, int]:
        score = image.tamper_score
        flagged = score is not None and score >= FLAGGED
        return (0 if flagged else 1, -(score or 0.0) if flagged else 0.0, image.position)

    return sorted(case.images, key=key)


def write_case_pdf(
    case: Case, storage: Storage, out: IO[bytes], *, extra: Mapping[str, dict[str, Any]] | None = None, compress: bool = True
) -> None:
    """A case's PDF: a cover (label, dates, sensitivity, counts, the images' verdicts), then one section per image.

    ``case`` must have its images and their findings loaded; ``extra`` maps an image id (as text) to report
    keys the caller looked up elsewhere (see :func:`write_image_pdf`).
    """
    summary = batch_summary(case)
    doc = _document(out, f"Forensic report: {case.label or case.id}", compress)
    counts = summary["progress"]
    ordered = _flagged_first(case)
    flagged = sum(1 for i in ordered if i.tamper_score is not None and i.tamper_score >= FLAGGED)
    story: list[Flowable] = [
        _p("Image forensics report", SMALL),
        Paragraph(text(case.label or "Untitled case", 300), TITLE),
    ]
    cover = _facts(
        [
            ("Case", summary["case_id"]),
            ("Status", words.status(summary["status"])),
            ("Created", words.when(summary["created_at"])),
            ("Completed", words.when(summary["completed_at"])),
            ("Sensitivity", case.sensitivity),
            (
                "Images",
                f"{counts['total']} in all: {counts['completed']} done, {counts['failed']} failed, "
                f"{counts['queued'] + counts['running']} still waiting or analysing",
            ),
            ("Flagged", f"{flagged} with a tamper score of {FLAGGED:.0f} or more"),
            ("Engine", f"{engine_version()} · commit {engine_commit()}"),
        ],
        doc.width,
    )
    if cover is not None:
        story.append(cover)
    rows: list[list[Any]] = [[_p("File", SMALL), _p("Verdict", SMALL), _p("Score", SMALL), _p("SHA-256", SMALL)]]
    by_id = {entry["id"]: entry for entry in summary["images"]}
    for image in ordered:
        entry = by_id[str(image.id)]
        said = words.verdict(entry["verdict"]) if entry["status"] == "completed" else words.status(entry["status"])
        if entry["error"]:
            said += f" ({words.problem(entry['error']['code'])})"
        rows.append(
            [_p(entry["file"], CELL, 300), _p(said, CELL), _p(words.score(entry["tamper_score"]), CELL), _p(entry["sha256"], SMALL)]
        )
    table = Table(rows, colWidths=[55 * mm, 40 * mm, 12 * mm, doc.width - 107 * mm], repeatRows=1, hAlign="LEFT")
    table.setStyle(GRID)
    story += [Spacer(1, 4 * mm), table]
    for image in ordered:
        story.append(PageBreak())
        report = image_report(image, lambda key: None) | (extra or {}).get(str(image.id), {})
        story += image_story(report, storage, image.overlay_key, doc.width, doc.height)
    footer = _footer(case.label or f"case {case.id}")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)


__all__ = ["engine_commit", "engine_version", "picture_jpeg", "text", "write_case_pdf", "write_image_pdf"]
