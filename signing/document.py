"""The decision document: the PDF a decision-maker reads and the seal signs.

Rendered from the structured report (``handlers.dialogue.build_report``) and its
form template with reportlab's platypus, in Helvetica (a standard PDF font, so
nothing is embedded and the file stays small). The same input always gives the
same bytes: reportlab's invariant mode fixes the document id, and the creation
date is the report's submission time (the decision's, in the version sealed).
That lets the signing page show the SHA-256 of the document before anyone
signs, and lets anyone re-render and compare later.

The decision is made when it is signed, so the decision date is the signature's
day, not the report's: a report sent at 23:50 and signed at 00:10 decides on the
next day, and every deadline counts from that day (LVU 7 §: one week from the day
of the decision). The version the signer reviews (``decided_at=None``) says the
decision date is the day of signing; at signing the document is rendered again
with the moment of the decision (``decided_at``), and that version is sealed.

The decision-maker's section states the mandate: the chair, or a member the
committee has appointed, with the appointment (who, when, which § of the
minutes) and the statute that lets them decide when the committee's decision
cannot be awaited (:class:`Mandate`).

The page reserves an empty box under the decision-maker's name for the visible
signature: it is written into the PDF as an empty signature field named
:data:`SIGNATURE_FIELD`, so the seal signs into that field and its stamp lands
exactly there, whatever page the box fell on.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfdoc import PDFArray, PDFDictionary, PDFName, PDFString
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

from config.forms import FormTemplate
from config.settings import DecisionMaker, Delegate, DutySettings, Signer

__all__ = [
    "LOCAL_TIME",
    "SIGNATURE_BOX_SIZE",
    "SIGNATURE_FIELD",
    "Delegation",
    "Mandate",
    "RenderedDecision",
    "SignatureBox",
    "layout_decision",
    "layout_record",
    "layout_refusal",
    "mandate_of",
    "render_decision",
    "render_record",
    "render_refusal",
]

LOCAL_TIME = ZoneInfo("Europe/Stockholm")
"""Dates on the document and the stamp are Swedish local time, as the law counts days."""
SIGNATURE_FIELD = "Beslutsfattare"
"""The empty signature field the document reserves; the seal signs into it."""
SIGNATURE_BOX_SIZE = (260, 96)
"""Width and height of the reserved box in PDF points (1/72 inch)."""

_MARGIN = 20 * mm
_FOOTER_Y = 12 * mm
_INK = colors.HexColor("#1a1a1a")
_MUTED = colors.HexColor("#555555")
_RULE = colors.HexColor("#9a9a9a")
_DECISION_BACKGROUND = colors.HexColor("#f2f4f7")

_TEXT: Mapping[str, Mapping[str, str]] = {
    "sv": {
        "committee": "Socialnämnden",
        "title": "Beslut",
        "case": "Ärende",
        "date": "Beslutsdatum",
        "at_signing": "dagen för underskriften",
        "legal": "Lagrum",
        "report": "Underlag",
        "report_line": "{title} (version {version}), upprättat {date} kl. {time} av {by}",
        "decision": "Beslutet",
        "no_decision": "Beslutstext saknas.",
        "grounds": "Beslutsunderlag",
        "not_given": "Ingen uppgift.",
        "maker": "Beslutsfattare",
        "name": "Namn",
        "role": "Roll",
        "mandate": "Beslutanderätt",
        "mandate_chair": "Ordförande i {body}, vald av {by} den {on}, {ref}",
        "mandate_member": "Ledamot förordnad av {by} den {on}, {ref}",
        "mandate_until": " (gäller till och med {until})",
        "mandate_basis": ", med stöd av {basis}, då nämndens beslut inte kunde avvaktas.",
        "decided": "Beslutat",
        "decided_at": "{date} kl. {time}",
        "decided_pending": "när beslutet undertecknas; beslutsdatum är dagen för underskriften",
        "signed_note": "Beslutet är undertecknat elektroniskt; se signaturen.",
        "next_step": "Nästa steg",
        "appeal": "Hur man överklagar",
        "page": "Sida {page} av {pages}",
        # A delegate decides under the delegation order (kommunallagen 6 kap. 37 §).
        "mandate_delegation": "Beslut fattat med stöd av delegation enligt {ref}.",
        # A refusal is a decision too; the template names it (refusal_title, refusal_text).
        "refusal_title": "Beslut att inte besluta enligt förslaget",
        "refusal_text": "{body} beslutade att inte fatta det föreslagna beslutet.",
        "refusal_grounds": "Skäl för beslutet",
        # A form with signer = "none": the worker's own record, sealed, not a decision.
        "record_title": "Dokumentation",
        "record_date": "Datum",
        "record_by_heading": "Dokumenterat av",
        "record_by": "Dokumenterat av {worker} den {date} kl. {time}.",
        "record_worker": "Handläggare",
        "record_at": "Tidpunkt",
        "record_note": (
            "Handläggarens dokumentation, inget beslut. Den är förseglad elektroniskt; se sigillet."
        ),
    },
    "en": {
        "committee": "Social Welfare Committee",
        "title": "Decision",
        "case": "Case",
        "date": "Decision date",
        "at_signing": "the day of signing",
        "legal": "Legal basis",
        "report": "Report",
        "report_line": "{title} (version {version}), drawn up {date} at {time} by {by}",
        "decision": "The decision",
        "no_decision": "The decision text is missing.",
        "grounds": "Facts and grounds",
        "not_given": "Not given.",
        "maker": "Decision-maker",
        "name": "Name",
        "role": "Role",
        "mandate": "Power to decide",
        "mandate_chair": "Chair of {body}, elected by {by} on {on}, {ref}",
        "mandate_member": "Member appointed by {by} on {on}, {ref}",
        "mandate_until": " (valid until {until} inclusive)",
        "mandate_basis": ", under {basis}, as the committee's decision could not be awaited.",
        "decided": "Decided",
        "decided_at": "{date} at {time}",
        "decided_pending": "when the decision is signed; the decision date is the day of signing",
        "signed_note": "The decision is signed electronically; see the signature.",
        "next_step": "Next step",
        "appeal": "How to appeal",
        "page": "Page {page} of {pages}",
        "mandate_delegation": "Decision made under delegation, {ref}.",
        "refusal_title": "Decision not to decide as proposed",
        "refusal_text": "{body} decided not to make the proposed decision.",
        "refusal_grounds": "Reasons for the decision",
        "record_title": "Record",
        "record_date": "Date",
        "record_by_heading": "Documented by",
        "record_by": "Documented by {worker} on {date} at {time}.",
        "record_worker": "Social worker",
        "record_at": "Time",
        "record_note": (
            "The social worker's record, not a decision. It is sealed electronically; see the seal."
        ),
    },
}
_ROLES_EN = {
    "ordförande": "Chair",
    "förordnad ledamot": "Appointed member",
    "vice ordförande": "Vice chair",
    "ledamot": "Member",
}
#: What lets the chair or an appointed member decide when the committee's decision
#: cannot be awaited, per form, for forms whose template does not say it
#: (``mandate``). Sources: LVU (1990:52) 6 § andra stycket ("Om socialnämndens beslut
#: om omhändertagande inte kan avvaktas, får nämndens ordförande eller någon annan
#: ledamot som nämnden har förordnat besluta om omedelbart omhändertagande", as JO
#: 956-2008 renders it); LVM (1988:870) 13 § (the same rule for adults; which
#: paragraph of 13 § is not checked here, so only the section is cited).
_MANDATE_BASIS: Mapping[str, Mapping[str, str]] = {
    "lvu6": {"sv": "6 § andra stycket LVU", "en": "section 6, second paragraph, LVU"},
    "lvm13": {"sv": "13 § LVM", "en": "section 13 LVM"},
}


@dataclass(frozen=True)
class Mandate:
    """Under what the signer decides: the chair's election or the committee's appointment.

    Printed in the decision-maker's section with the statute that lets them decide
    alone (LVU 6 § andra stycket, LVM 13 §), so the file shows who decided and why
    they could.
    """

    chair: bool
    appointed_by: str
    appointed_on: date
    minutes_ref: str
    valid_until: date

    @classmethod
    def of(cls, maker: DecisionMaker) -> Mandate | None:
        """The mandate in ``maker``'s appointment; None without one."""
        appointment = maker.appointment
        if appointment is None:
            return None
        return cls(
            chair=maker.mandate == "ordförande",
            appointed_by=appointment.appointed_by,
            appointed_on=appointment.appointed_on,
            minutes_ref=appointment.minutes_ref,
            valid_until=appointment.valid_until,
        )

    def text(self, texts: Mapping[str, str], *, body: str, basis: str | None) -> str:
        key = "mandate_chair" if self.chair else "mandate_member"
        shown = texts[key].format(
            body=body,
            by=self.appointed_by,
            on=self.appointed_on.isoformat(),
            ref=self.minutes_ref,
        )
        shown += texts["mandate_until"].format(until=self.valid_until.isoformat())
        return shown + (texts["mandate_basis"].format(basis=basis) if basis else ".")


@dataclass(frozen=True)
class Delegation:
    """Under what a delegate decides: the point of the committee's delegation order.

    A committee may let an employee decide on its behalf (kommunallagen (2017:725)
    6 kap. 37 §); the decision document says so instead of a committee mandate.
    """

    ref: str

    def text(self, texts: Mapping[str, str], *, body: str, basis: str | None) -> str:
        return texts["mandate_delegation"].format(ref=self.ref)


def mandate_of(signer: Signer) -> Mandate | Delegation | None:
    """What ``signer`` decides under: a delegate's delegation, a member's appointment."""
    if isinstance(signer, Delegate):
        return Delegation(signer.delegation_ref)
    return Mandate.of(signer)


def mandate_basis(form: FormTemplate, language: str) -> str | None:
    """The statute that lets one person decide this form's decision, if any."""
    given = getattr(form, "mandate", None)  # a template may say it (config.forms)
    if isinstance(given, str) and given:
        return given
    return _MANDATE_BASIS.get(form.id, {}).get(language)


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """What rendering a decision reads of the settings (the forms and the duty
    settings' language), for a seal process: the whole ``Settings`` does not pickle
    (read-only mappings), and the secrets in it have no business there. Defined here,
    in a module every seal process has loaded, so unpickling it costs no import."""

    forms: Mapping[str, FormTemplate]
    duty: DutySettings


@dataclass(frozen=True)
class SignatureBox:
    """Where the visible signature goes: a 0-based page index and a rectangle in points."""

    page: int
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def rect(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True)
class RenderedDecision:
    """The rendered PDF and where its reserved signature box landed."""

    pdf: bytes
    signature_box: SignatureBox
    pages: int


def render_decision(
    report: Mapping[str, Any],
    form: FormTemplate,
    *,
    municipality_name: str,
    signer_name: str,
    signer_role: str,
    language: str = "sv",
    body_name: str | None = None,
    mandate: Mandate | Delegation | None = None,
    decided_at: datetime | None = None,
) -> bytes:
    """The decision PDF for ``report`` (see :func:`layout_decision` for the box too)."""
    return layout_decision(
        report,
        form,
        municipality_name=municipality_name,
        signer_name=signer_name,
        signer_role=signer_role,
        language=language,
        body_name=body_name,
        mandate=mandate,
        decided_at=decided_at,
    ).pdf


def layout_decision(
    report: Mapping[str, Any],
    form: FormTemplate,
    *,
    municipality_name: str,
    signer_name: str,
    signer_role: str,
    language: str = "sv",
    body_name: str | None = None,
    mandate: Mandate | Delegation | None = None,
    decided_at: datetime | None = None,
) -> RenderedDecision:
    """Render the decision and report the reserved signature box.

    ``body_name`` is the deciding body (the language's "Socialnämnden" when None);
    ``mandate`` what the signer decides under (no such line when None);
    ``decided_at`` the moment of the decision, the signature: None renders the
    version the signer reviews, which says the decision date is the day of signing.

    Every footer says "page x of y" without reportlab's deferred-page tricks, which
    would break the signature field's reference to its page: see :func:`_build`.
    """
    return _build(
        _content(
            report,
            form,
            municipality_name=municipality_name,
            signer_name=signer_name,
            signer_role=signer_role,
            language=language,
            body_name=body_name,
            mandate=mandate,
            decided_at=decided_at,
        )
    )


def _content(
    report: Mapping[str, Any],
    form: FormTemplate,
    *,
    municipality_name: str,
    signer_name: str,
    signer_role: str,
    language: str,
    body_name: str | None,
    mandate: Mandate | Delegation | None,
    decided_at: datetime | None,
) -> _Content:
    """What a document of ``report`` says, before it is laid out."""
    if language not in _TEXT:
        raise ValueError(f"unsupported language {language!r}; expected one of {sorted(_TEXT)}")
    text = _TEXT[language]
    submitted = _local(report["submitted_at"])
    decided = _local(decided_at) if decided_at is not None else None
    case_number = str(report["case_number"])
    body = body_name or text["committee"]
    return _Content(
        text=text,
        form=form,
        report=report,
        municipality_name=municipality_name,
        body=body,
        signer_name=signer_name,
        signer_role=_ROLES_EN.get(signer_role, signer_role) if language == "en" else signer_role,
        mandate=(
            mandate.text(text, body=body, basis=mandate_basis(form, language)) if mandate else None
        ),
        submitted=submitted,
        decided=decided,
        case_number=case_number,
        language=language,
    )


def render_refusal(
    report: Mapping[str, Any],
    form: FormTemplate,
    *,
    municipality_name: str,
    signer_name: str,
    signer_role: str,
    reason: str,
    decided_at: datetime,
    language: str = "sv",
    body_name: str | None = None,
    mandate: Mandate | Delegation | None = None,
) -> bytes:
    """The refusal PDF (see :func:`layout_refusal`)."""
    return layout_refusal(
        report,
        form,
        municipality_name=municipality_name,
        signer_name=signer_name,
        signer_role=signer_role,
        reason=reason,
        decided_at=decided_at,
        language=language,
        body_name=body_name,
        mandate=mandate,
    ).pdf


def layout_refusal(
    report: Mapping[str, Any],
    form: FormTemplate,
    *,
    municipality_name: str,
    signer_name: str,
    signer_role: str,
    reason: str,
    decided_at: datetime,
    language: str = "sv",
    body_name: str | None = None,
    mandate: Mandate | Delegation | None = None,
) -> RenderedDecision:
    """A refusal is a decision too: "{body} beslutade att inte ...", with its grounds.

    The template names it (``refusal_title``, ``refusal_text`` with ``{body}``, and
    ``refusal_appeal`` when a refusal can be appealed); a template without them gets
    a general wording. ``reason`` is the decision-maker's grounds, printed as the
    reasons for the decision; the proposal that was not adopted stays among the
    report's answers. ``decided_at`` is the moment of the refusal.
    """
    content = _content(
        report,
        form,
        municipality_name=municipality_name,
        signer_name=signer_name,
        signer_role=signer_role,
        language=language,
        body_name=body_name,
        mandate=mandate,
        decided_at=decided_at,
    )
    text = content.text
    title = form.text_in("refusal_title", language) or text["refusal_title"]
    statement = form.text_in("refusal_text", language) or text["refusal_text"]
    return _build(
        dataclasses.replace(
            content,
            kind="refusal",
            subtitle=title,
            statement=statement.format(body=content.body),
            reason=reason,
        )
    )


def render_record(
    report: Mapping[str, Any],
    form: FormTemplate,
    *,
    municipality_name: str,
    worker: str,
    recorded_at: datetime,
    language: str = "sv",
    body_name: str | None = None,
) -> bytes:
    """The worker's record PDF (see :func:`layout_record`)."""
    return layout_record(
        report,
        form,
        municipality_name=municipality_name,
        worker=worker,
        recorded_at=recorded_at,
        language=language,
        body_name=body_name,
    ).pdf


def layout_record(
    report: Mapping[str, Any],
    form: FormTemplate,
    *,
    municipality_name: str,
    worker: str,
    recorded_at: datetime,
    language: str = "sv",
    body_name: str | None = None,
) -> RenderedDecision:
    """A form whose ``signer`` is "none": the report as the worker's own record.

    Not a decision: titled "Dokumentation", dated the moment it is recorded, the
    form's decision question shown under its own label, and "Dokumenterat av
    {worker}" where a decision names its decision-maker. The reserved box takes the
    seal, which makes any later change detectable.
    """
    content = _content(
        report,
        form,
        municipality_name=municipality_name,
        signer_name=worker,
        signer_role="",
        language=language,
        body_name=body_name,
        mandate=None,
        decided_at=recorded_at,
    )
    return _build(dataclasses.replace(content, kind="record", subtitle=form.decision_type))


#: Pages of the last layout of each document (case, kind, language): the next layout
#: of the same document (the decided version of the one reviewed, a render repeated
#: to compare it) tries that count at once and, when it holds, needs one pass, not two.
_PAGES_SEEN: dict[tuple[str, str, str], int] = {}
_PAGES_SEEN_MAX = 512


def _build(content: _Content) -> RenderedDecision:
    """Lay the content out with the footers' "page x of y" right.

    The layout does not depend on the footers, so a pass whose page count matches the
    count its footers said is final. Unknown count: a first pass counts the pages and
    a second one prints them; a count seen for this document before: one pass, and a
    second only if the count changed. Either way the bytes are those of the two-pass
    layout."""
    text, case_number = content.text, content.case_number
    seen_key = (case_number, content.kind, content.language)
    pages = _PAGES_SEEN.get(seen_key, 0)
    box: SignatureBox | None = None
    title = text["record_title"] if content.kind == "record" else text["title"]
    subtitle = content.subtitle or content.form.decision_type
    for _ in range(3):
        output = io.BytesIO()
        reserved = _ReservedBox(*SIGNATURE_BOX_SIZE)
        document = SimpleDocTemplate(
            output,
            pagesize=A4,
            leftMargin=_MARGIN,
            rightMargin=_MARGIN,
            topMargin=_MARGIN,
            bottomMargin=_MARGIN + 6 * mm,
            title=f"{title} {case_number}",
            author=f"{content.municipality_name}, {content.body}",
            subject=subtitle,
            creator="Socialjour",
            producer="Socialjour",
            lang="sv-SE" if content.language == "sv" else "en-GB",
            invariant=1,
        )
        created = content.decided or content.submitted  # the metadata's date, fixed too
        decorate = _page_decorator(text, case_number, subtitle, created, pages)
        document.build(content.story(reserved), onFirstPage=decorate, onLaterPages=decorate)
        box = reserved.placed
        if document.page == pages:
            break
        pages = document.page
    if len(_PAGES_SEEN) >= _PAGES_SEEN_MAX:
        _PAGES_SEEN.clear()
    _PAGES_SEEN[seen_key] = pages
    if box is None:
        raise RuntimeError("the reserved signature box was never drawn")
    return RenderedDecision(pdf=output.getvalue(), signature_box=box, pages=pages)


# -- content ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Content:
    text: Mapping[str, str]
    form: FormTemplate
    report: Mapping[str, Any]
    municipality_name: str
    body: str
    signer_name: str
    signer_role: str
    mandate: str | None
    submitted: datetime
    decided: datetime | None
    case_number: str
    language: str = "sv"
    #: "decision", "refusal" (a decision not to decide as proposed) or "record" (the
    #: worker's documentation: ``signer_name`` is the worker, ``decided`` the moment).
    kind: str = "decision"
    #: The line under the title; the form's decision type when empty.
    subtitle: str = ""
    #: A refusal's decision sentence and the decision-maker's grounds.
    statement: str = ""
    reason: str = ""

    def _maker(self) -> Table:
        """Who decides, in what role, under which mandate, and when."""
        text = self.text
        if self.kind == "record":
            assert self.decided is not None
            at = text["decided_at"].format(
                date=self.decided.strftime("%Y-%m-%d"), time=self.decided.strftime("%H:%M")
            )
            return _pairs(
                [(text["record_worker"], self.signer_name), (text["record_at"], at)],
                label_width=30 * mm,
            )
        rows = [(text["name"], self.signer_name), (text["role"], self.signer_role)]
        if self.mandate:
            rows.append((text["mandate"], self.mandate))
        if self.decided is None:
            rows.append((text["decided"], text["decided_pending"]))
        else:
            shown = text["decided_at"].format(
                date=self.decided.strftime("%Y-%m-%d"), time=self.decided.strftime("%H:%M")
            )
            rows.append((text["decided"], shown))
        return _pairs(rows, label_width=30 * mm)

    def story(self, reserved: _ReservedBox) -> list[Flowable]:
        text, form = self.text, self.form
        decision_field = form.decision_field
        answers: Sequence[Mapping[str, Any]] = self.report.get("answers", ())
        decision_answer = next(
            (a for a in answers if decision_field and a.get("id") == decision_field.id), None
        )
        story: list[Flowable] = [*self._header(), *self._title()]
        if self.kind == "refusal":
            # The decision is the refusal; the proposal stays among the answers.
            story += [
                _heading(text["decision"]),
                Paragraph(_markup(self.statement), _DECISION),
                KeepTogether([_heading(text["refusal_grounds"]), _paragraph(self.reason)]),
            ]
            decision_answer = None
        elif decision_field is not None:
            decision_text = _display(decision_answer) or text["no_decision"]
            heading = decision_field.label if self.kind == "record" else text["decision"]
            story += [_heading(heading), Paragraph(_markup(decision_text), _DECISION)]
        story.append(_heading(text["grounds"]))
        for answer in answers:
            if answer is decision_answer:
                continue
            number = answer.get("number")
            label = str(answer.get("label") or answer.get("id") or "")
            shown_label = f"{number}. {label}" if number is not None else label
            body = _display(answer)
            story.append(
                KeepTogether(
                    [
                        Paragraph(_markup(shown_label), _LABEL),
                        Paragraph(_markup(body), _ANSWER)
                        if body
                        else Paragraph(f"<i>{_markup(text['not_given'])}</i>", _ANSWER),
                    ]
                )
            )
        story.append(KeepTogether([*self._signed_by(), Spacer(1, 4), reserved]))
        if self.kind != "refusal":  # what follows a decision taken, not a refusal
            story.append(KeepTogether([_heading(text["next_step"]), _paragraph(form.next_step)]))
        appeal = form.text_in(
            "refusal_appeal" if self.kind == "refusal" else "appeal", self.language
        )
        if appeal:
            story.append(KeepTogether([_heading(text["appeal"]), _paragraph(appeal)]))
        return story

    def _signed_by(self) -> list[Flowable]:
        """The decision-maker's section, or for a record who documented it and when."""
        text = self.text
        if self.kind != "record":
            return [
                _heading(text["maker"]),
                self._maker(),
                Spacer(1, 4),
                Paragraph(_markup(text["signed_note"]), _BODY),
            ]
        assert self.decided is not None
        documented = text["record_by"].format(
            worker=self.signer_name,
            date=self.decided.strftime("%Y-%m-%d"),
            time=self.decided.strftime("%H:%M"),
        )
        return [
            _heading(text["record_by_heading"]),
            self._maker(),
            Spacer(1, 4),
            Paragraph(_markup(documented), _BODY),
            Paragraph(_markup(text["record_note"]), _BODY),
        ]

    def _header(self) -> list[Flowable]:
        text = self.text
        left = [
            Paragraph(_markup(self.municipality_name), _ORGANISATION),
            Paragraph(_markup(self.body), _COMMITTEE),
        ]
        decision_date = (
            self.decided.strftime("%Y-%m-%d") if self.decided is not None else text["at_signing"]
        )
        date_label = text["record_date"] if self.kind == "record" else text["date"]
        right = _pairs(
            [(text["case"], self.case_number), (date_label, decision_date)],
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

    def _title(self) -> list[Flowable]:
        text, form = self.text, self.form
        report_line = text["report_line"].format(
            title=form.title,
            version=form.version,
            date=self.submitted.strftime("%Y-%m-%d"),
            time=self.submitted.strftime("%H:%M"),
            by=str(self.report.get("submitted_by") or "-"),
        )
        title = text["record_title"] if self.kind == "record" else text["title"]
        return [
            Spacer(1, 5 * mm),
            Paragraph(_markup(title), _TITLE),
            Paragraph(_markup(self.subtitle or form.decision_type), _DECISION_TYPE),
            _pairs(
                [(text["legal"], form.legal_reference), (text["report"], report_line)],
                label_width=28 * mm,
            ),
        ]


class _ReservedBox(Flowable):
    """An empty frame for the signature stamp that also writes the signature field.

    ``placed`` records where it was drawn, in default user space, for the caller.
    """

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self.placed: SignatureBox | None = None

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        return self.width + 1, self.height + 1  # room to move onto whole points

    def draw(self) -> None:
        canvas: Canvas = self.canv
        x, y = canvas.absolutePosition(0, 0)
        # Whole-point corners: pyHanko sizes the stamp in whole points, and a frame
        # off by a fraction would peek out beside it.
        dx, dy = math.ceil(x) - x, math.ceil(y) - y
        canvas.saveState()
        canvas.setStrokeColor(_RULE)
        canvas.setLineWidth(0.6)
        canvas.setDash(3, 2)
        inset = 1.5  # inside the box, so the stamp's opaque ground covers it
        canvas.rect(
            dx + inset, dy + inset, self.width - 2 * inset, self.height - 2 * inset, stroke=1
        )
        canvas.restoreState()
        box = SignatureBox(
            page=canvas.getPageNumber() - 1,
            x1=math.ceil(x),
            y1=math.ceil(y),
            x2=math.ceil(x) + self.width,
            y2=math.ceil(y) + self.height,
        )
        self.placed = box
        _add_signature_field(canvas, box)


def _add_signature_field(canvas: Canvas, box: SignatureBox) -> None:
    """An unsigned signature field (widget annotation) over ``box`` on the current page.

    reportlab has no signature fields, so this builds the dictionary the way its
    own AcroForm text fields are built (ISO 32000-1, 12.7.4.5).
    """
    form = canvas.acroForm
    widget = PDFDictionary(
        {
            "FT": PDFName("Sig"),
            "T": PDFString(SIGNATURE_FIELD),
            "Type": PDFName("Annot"),
            "Subtype": PDFName("Widget"),
            "Rect": PDFArray(list(box.rect)),
            "F": 4,  # print
            "P": canvas._doc.thisPageRef(),
        }
    )
    canvas._addAnnotation(widget)
    form.fields.append(form.getRef(widget))


def _page_decorator(
    text: Mapping[str, str], case_number: str, decision_type: str, moment: datetime, pages: int
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
        canvas.drawString(_MARGIN, _FOOTER_Y, _winansi(f"{case_number} · {decision_type}"))
        page = canvas.getPageNumber()
        shown = text["page"].format(page=page, pages=pages or page)
        canvas.drawRightString(width - _MARGIN, _FOOTER_Y, shown)
        canvas.restoreState()

    return decorate


# -- text helpers ----------------------------------------------------------------------


def _local(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(LOCAL_TIME)


def _display(answer: Mapping[str, Any] | None) -> str:
    if answer is None:
        return ""
    shown = answer.get("display")
    if shown is None:
        shown = answer.get("value")
    if shown is None:
        return ""
    if isinstance(shown, list | tuple):
        return ", ".join(str(item) for item in shown)
    return str(shown).strip()


#: Text that is already what Helvetica shows: printable Latin-1 and newlines.
_PLAIN_CP1252 = re.compile(r"[\n\x20-\x7e\xa0-\xac\xae-\xff]*")  # not U+00AD, a format character


def _winansi(text: str) -> str:
    """Text the standard fonts can show: Latin-1 and cp1252 as is, others simplified.

    Helvetica carries only the cp1252 repertoire (å ä ö é ü § – ” ...). A letter
    outside it loses its accent when it has one (Ş -> S, ł stays ?), so a name
    stays readable; anything else becomes "?". Control characters go, newlines stay.
    """
    text = unicodedata.normalize("NFC", text)
    if _PLAIN_CP1252.fullmatch(text):  # nearly every answer: nothing to change
        return text
    out: list[str] = []
    for character in text:
        if character == "\n":
            out.append(character)
            continue
        if unicodedata.category(character) in ("Cc", "Cf"):
            continue
        try:
            character.encode("cp1252")
        except UnicodeEncodeError:
            simpler = unicodedata.normalize("NFKD", character)
            kept = simpler.encode("cp1252", "ignore").decode("cp1252")
            out.append(kept if kept.strip() else "?")
        else:
            out.append(character)
    return "".join(out)


def _markup(text: str) -> str:
    """User text made safe for reportlab's paragraph mini-markup, line breaks kept."""
    lines = _winansi(text).replace("\r\n", "\n").split("\n")
    return "<br/>".join(escape(line) for line in lines)


def _heading(text: str) -> Paragraph:
    return Paragraph(_markup(text), _HEADING)


def _paragraph(text: str) -> Paragraph:
    return Paragraph(_markup(text), _BODY)


def _pairs(
    rows: Sequence[tuple[str, str]],
    *,
    label_width: float = 22 * mm,
    value_width: float | None = None,
) -> Table:
    table = Table(
        [
            [Paragraph(_markup(label), _PAIR_LABEL), Paragraph(_markup(value), _BODY)]
            for label, value in rows
        ],
        colWidths=[label_width, value_width],
        hAlign="LEFT",
    )
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 4),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    return table


_BODY = ParagraphStyle("body", fontName="Helvetica", fontSize=10, leading=13.5, textColor=_INK)
_PAIR_LABEL = ParagraphStyle(
    "pair-label", parent=_BODY, fontName="Helvetica-Bold", textColor=_MUTED
)
_ORGANISATION = ParagraphStyle(
    "organisation", parent=_BODY, fontName="Helvetica-Bold", fontSize=14, leading=18
)
_COMMITTEE = ParagraphStyle("committee", parent=_BODY, fontSize=11, leading=14)
_TITLE = ParagraphStyle("title", parent=_BODY, fontName="Helvetica-Bold", fontSize=22, leading=27)
_DECISION_TYPE = ParagraphStyle(
    "decision-type", parent=_BODY, fontName="Helvetica-Bold", fontSize=13, leading=17, spaceAfter=4
)
_HEADING = ParagraphStyle(
    "heading",
    parent=_BODY,
    fontName="Helvetica-Bold",
    fontSize=12,
    leading=15,
    spaceBefore=10,
    spaceAfter=4,
)
_LABEL = ParagraphStyle(
    "label",
    parent=_BODY,
    fontName="Helvetica-Bold",
    fontSize=9.5,
    leading=12,
    spaceBefore=5,
    textColor=_MUTED,
)
_ANSWER = ParagraphStyle("answer", parent=_BODY, leftIndent=12)
_DECISION = ParagraphStyle(
    "decision",
    parent=_BODY,
    fontSize=11,
    leading=15,
    backColor=_DECISION_BACKGROUND,
    borderColor=_RULE,
    borderWidth=0.6,
    borderPadding=6,
    leftIndent=6,
    rightIndent=6,
    spaceBefore=6,
    spaceAfter=8,
)
