"""The handover package's own documents: the report, the execution record, the timeline.

The signed decision goes to the home municipality as it was sealed; beside it the
intake gets three PDFs made here (issue 9 §2) with the layout helpers of the
decision document (:mod:`signing.document`), so the package reads as one file:

- the report as the worker submitted it (every question with its answer);
- the execution record (``!verkställt``): when, where, police assistance, who
  was told, who carried it out;
- the case's timeline: what happened when and by whom, from the audit trail,
  without anything about the person (the caller passes the lines as text).

Like the decision, the same input gives the same bytes (reportlab's invariant
mode and a fixed creation date): a repair that renders again sends the same file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    HRFlowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from signing.document import (
    _ANSWER,
    _BODY,
    _COMMITTEE,
    _DECISION_TYPE,
    _FOOTER_Y,
    _LABEL,
    _MARGIN,
    _MUTED,
    _ORGANISATION,
    _PAIR_LABEL,
    _RULE,
    _TITLE,
    _display,
    _heading,
    _local,
    _markup,
    _pairs,
    _winansi,
)

__all__ = ["TimelineLine", "render_execution", "render_report", "render_timeline"]

_TEXT: Mapping[str, Mapping[str, str]] = {
    "sv": {
        "committee": "Socialnämnden",
        "report": "Rapport",
        "execution": "Verkställighet",
        "timeline": "Händelselogg",
        "case": "Ärende",
        "date": "Datum",
        "form": "Formulär",
        "form_line": "{title} (version {version})",
        "legal": "Lagrum",
        "drawn_up": "Upprättad",
        "recorded": "Registrerad",
        "executed": "Verkställt",
        "at_by": "{date} kl. {time} av {by}",
        "at": "{date} kl. {time}",
        "answers": "Uppgifter",
        "not_given": "Ingen uppgift.",
        "when": "Tid",
        "who": "Vem",
        "what": "Händelse",
        "timeline_note": (
            "Vad som hänt i ärendet, när och av vem, ur Socialjours händelselogg. "
            "Loggen innehåller inga uppgifter om den som ärendet gäller."
        ),
        "empty": "Inga händelser.",
        "page": "Sida {page} av {pages}",
    },
    "en": {
        "committee": "Social Welfare Committee",
        "report": "Report",
        "execution": "Execution",
        "timeline": "Timeline",
        "case": "Case",
        "date": "Date",
        "form": "Form",
        "form_line": "{title} (version {version})",
        "legal": "Legal basis",
        "drawn_up": "Drawn up",
        "recorded": "Recorded",
        "executed": "Carried out",
        "at_by": "{date} at {time} by {by}",
        "at": "{date} at {time}",
        "answers": "Particulars",
        "not_given": "Not given.",
        "when": "Time",
        "who": "Who",
        "what": "Event",
        "timeline_note": (
            "What happened in the case, when and by whom, from Socialjour's audit trail. "
            "The trail holds nothing about the person the case is about."
        ),
        "empty": "No events.",
        "page": "Page {page} of {pages}",
    },
}


@dataclass(frozen=True)
class TimelineLine:
    """One line of the timeline, already in words (no personal data: see the caller)."""

    at: datetime
    actor: str
    what: str


def render_report(
    report: Mapping[str, Any],
    *,
    municipality_name: str,
    body_name: str | None = None,
    language: str = "sv",
) -> bytes:
    """The submitted report (``handlers.dialogue.build_report``) as a PDF."""
    text = _texts(language)
    submitted = _local(report["submitted_at"])
    facts = [
        (text["form"], _form_line(text, report)),
        (text["legal"], str(report.get("form", {}).get("legal_reference") or "-")),
        (text["drawn_up"], _at_by(text, submitted, report.get("submitted_by"))),
    ]
    return _render(
        text,
        kind="report",
        record=report,
        facts=facts,
        moment=submitted,
        municipality_name=municipality_name,
        body_name=body_name,
    )


def render_execution(
    record: Mapping[str, Any],
    *,
    municipality_name: str,
    body_name: str | None = None,
    language: str = "sv",
) -> bytes:
    """The execution record (the report's shape plus ``executed_at``) as a PDF."""
    text = _texts(language)
    recorded = _local(record["submitted_at"])
    executed = _local(record["executed_at"])
    facts = [
        (
            text["executed"],
            text["at"].format(date=f"{executed:%Y-%m-%d}", time=f"{executed:%H:%M}"),
        ),
        (text["legal"], str(record.get("form", {}).get("legal_reference") or "-")),
        (text["recorded"], _at_by(text, recorded, record.get("submitted_by"))),
    ]
    return _render(
        text,
        kind="execution",
        record=record,
        facts=facts,
        moment=recorded,
        municipality_name=municipality_name,
        body_name=body_name,
    )


def render_timeline(
    lines: Sequence[TimelineLine],
    *,
    case_number: str,
    title: str,
    municipality_name: str,
    at: datetime,
    body_name: str | None = None,
    language: str = "sv",
) -> bytes:
    """The case's timeline up to ``at`` as a PDF; ``title`` names the decision."""
    text = _texts(language)
    moment = _local(at)

    def story() -> list[Flowable]:
        return _timeline_story(
            text, lines, municipality_name, body_name, case_number, moment, title
        )

    return _build(text, story, case_number=case_number, subject=text["timeline"], moment=moment)


def _timeline_story(
    text: Mapping[str, str],
    lines: Sequence[TimelineLine],
    municipality_name: str,
    body_name: str | None,
    case_number: str,
    moment: datetime,
    title: str,
) -> list[Flowable]:
    story: list[Flowable] = [
        *_header(text, municipality_name, body_name, case_number, moment),
        Spacer(1, 5 * mm),
        Paragraph(_markup(text["timeline"]), _TITLE),
        Paragraph(_markup(title), _DECISION_TYPE),
        Paragraph(_markup(text["timeline_note"]), _BODY),
        Spacer(1, 4 * mm),
    ]
    if not lines:
        story.append(Paragraph(f"<i>{_markup(text['empty'])}</i>", _BODY))
    else:
        rows = [
            [Paragraph(_markup(text[key]), _PAIR_LABEL) for key in ("when", "who", "what")],
            *(
                [
                    Paragraph(_markup(f"{_local(line.at):%Y-%m-%d %H:%M}"), _BODY),
                    Paragraph(_markup(line.actor), _BODY),
                    Paragraph(_markup(line.what), _BODY),
                ]
                for line in lines
            ),
        ]
        table = Table(rows, colWidths=[32 * mm, 58 * mm, None], repeatRows=1, hAlign="LEFT")
        table.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 4),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.6, _RULE),
                    ("LINEBELOW", (0, 1), (-1, -1), 0.25, _RULE),
                ]
            )
        )
        story.append(table)
    return story


# -- shared layout -----------------------------------------------------------------------


def _texts(language: str) -> Mapping[str, str]:
    if language not in _TEXT:
        raise ValueError(f"unsupported language {language!r}; expected one of {sorted(_TEXT)}")
    return _TEXT[language]


def _form_line(text: Mapping[str, str], record: Mapping[str, Any]) -> str:
    form = record.get("form") or {}
    return text["form_line"].format(title=form.get("title", "-"), version=form.get("version", "-"))


def _at_by(text: Mapping[str, str], moment: datetime, by: object) -> str:
    return text["at_by"].format(date=f"{moment:%Y-%m-%d}", time=f"{moment:%H:%M}", by=by or "-")


def _render(
    text: Mapping[str, str],
    *,
    kind: str,
    record: Mapping[str, Any],
    facts: Sequence[tuple[str, str]],
    moment: datetime,
    municipality_name: str,
    body_name: str | None,
) -> bytes:
    case_number = str(record["case_number"])

    def story() -> list[Flowable]:
        return _record_story(text, kind, record, facts, moment, municipality_name, body_name)

    return _build(text, story, case_number=case_number, subject=text[kind], moment=moment)


def _record_story(
    text: Mapping[str, str],
    kind: str,
    record: Mapping[str, Any],
    facts: Sequence[tuple[str, str]],
    moment: datetime,
    municipality_name: str,
    body_name: str | None,
) -> list[Flowable]:
    case_number = str(record["case_number"])
    form = record.get("form") or {}
    story: list[Flowable] = [
        *_header(text, municipality_name, body_name, case_number, moment),
        Spacer(1, 5 * mm),
        Paragraph(_markup(text[kind]), _TITLE),
        Paragraph(
            _markup(str(form.get("decision_type") or form.get("title") or "")), _DECISION_TYPE
        ),
        _pairs(facts, label_width=28 * mm),
        _heading(text["answers"]),
    ]
    answers: Sequence[Mapping[str, Any]] = record.get("answers", ())
    for answer in answers:
        number = answer.get("number")
        label = str(answer.get("label") or answer.get("id") or "")
        shown = _display(answer)
        body = (
            Paragraph(_markup(shown), _ANSWER)
            if shown
            else Paragraph(f"<i>{_markup(text['not_given'])}</i>", _ANSWER)
        )
        heading = f"{number}. {label}" if number is not None else label
        story.append(KeepTogether([Paragraph(_markup(heading), _LABEL), body]))
    return story


def _header(
    text: Mapping[str, str],
    municipality_name: str,
    body_name: str | None,
    case_number: str,
    moment: datetime,
) -> list[Flowable]:
    left = [
        Paragraph(_markup(municipality_name), _ORGANISATION),
        Paragraph(_markup(body_name or text["committee"]), _COMMITTEE),
    ]
    right = _pairs(
        [(text["case"], case_number), (text["date"], f"{moment:%Y-%m-%d}")],
        label_width=26 * mm,
        value_width=40 * mm,
    )
    header = Table([[left, right]], colWidths=[None, 66 * mm])
    header.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    return [header, Spacer(1, 3 * mm), HRFlowable(width="100%", thickness=0.8, color=_RULE)]


def _build(
    text: Mapping[str, str],
    story: Callable[[], list[Flowable]],
    *,
    case_number: str,
    subject: str,
    moment: datetime,
) -> bytes:
    """Lay the story out twice: the first pass counts the pages for "page x of y"."""
    pages = 0
    pdf = b""
    for _ in range(2):
        output = io.BytesIO()
        document = SimpleDocTemplate(
            output,
            pagesize=A4,
            leftMargin=_MARGIN,
            rightMargin=_MARGIN,
            topMargin=_MARGIN,
            bottomMargin=_MARGIN + 6 * mm,
            title=f"{subject} {case_number}",
            subject=subject,
            creator="Socialjour",
            producer="Socialjour",
            invariant=1,
        )
        decorate = _footer(text, f"{case_number} · {subject}", moment, pages)
        document.build(story(), onFirstPage=decorate, onLaterPages=decorate)
        pages = document.page
        pdf = output.getvalue()
    return pdf


def _footer(
    text: Mapping[str, str], label: str, moment: datetime, pages: int
) -> Callable[[Canvas, SimpleDocTemplate], None]:
    created = moment.astimezone(UTC).strftime("D:%Y%m%d%H%M%S+00'00'")

    def decorate(canvas: Canvas, document: SimpleDocTemplate) -> None:
        canvas.setDateFormatter(lambda *_: created)
        canvas.saveState()
        width, _ = A4
        canvas.setStrokeColor(_RULE)
        canvas.setLineWidth(0.5)
        canvas.line(_MARGIN, _FOOTER_Y + 10, width - _MARGIN, _FOOTER_Y + 10)
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(_MUTED)
        canvas.drawString(_MARGIN, _FOOTER_Y, _winansi(label))
        page = canvas.getPageNumber()
        canvas.drawRightString(
            width - _MARGIN, _FOOTER_Y, text["page"].format(page=page, pages=pages or page)
        )
        canvas.restoreState()

    return decorate
