"""The decision PDF: what it says, that it says it the same way twice, and how it looks."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields

from config.forms import FormTemplate, builtin_forms
from handlers.dialogue import DialogueState, build_report
from signing.document import (
    SIGNATURE_BOX_SIZE,
    SIGNATURE_FIELD,
    Mandate,
    layout_decision,
    render_decision,
)
from signing.verify import verify_bytes
from tests.components import unavailable

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LVU = builtin_forms()["lvu6"]
SUBMITTED = datetime(2026, 11, 24, 2, 20, tzinfo=UTC)
DECISION = (
    "Elsa Åström, {pnr}, omhändertas omedelbart med stöd av 6 § LVU. Vården behövs enligt 2 § LVU."
)


def luhn_number(birth: str, serial3: str) -> str:
    """A personnummer YYYYMMDD-NNN + check digit that passes the Luhn test."""
    digits = birth[2:] + serial3
    total = 0
    for position, character in enumerate(digits):
        product = int(character) * (2 if position % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return f"{birth}-{serial3}{(10 - total % 10) % 10}"


PNR = luhn_number("20120315", "238")

#: field id -> (stored value, display text), as the dialogue engine stores them.
LVU_ANSWERS: dict[str, tuple[Any, str]] = {
    "namn": ("Elsa Åström", "Elsa Åström"),
    "personnummer": (PNR, PNR),
    "hemkommun": ("skovde", "Skövde kommun"),
    "vistelse": ("Polisstationen i Skövde", "Polisstationen i Skövde"),
    "grund": (["hemmet"], "Missförhållanden i hemmet (2 §)"),
    "handelse": (
        None,
        "Polisen ringde kl. 02.40: grannar hörde skrik & slag i lägenheten.\n"
        "Elsa (14 år) sprang till grannen <Öberg> och säger att pappan slog henne.\n"
        "Hon har blåmärken på båda armarna, enligt polisen.",
    ),
    "bradskande": (
        None,
        "Pappan är berusad och hotfull; mamman är inlagd på sjukhus. Väntar vi på "
        "rättens beslut riskerar Elsa att skadas igen i natt.",
    ),
    "placering": ("Jourhem i Skövde", "Jourhem i Skövde"),
    "vardnadshavare": (
        None,
        "Mamma: Karin Åström, 070-123 45 67 (på sjukhus).\nPappa: Per Åström (hemma).",
    ),
    "underrattade": (True, "Ja"),
    "underrattelse": (
        None,
        "Mamman underrättades per telefon kl. 03.10 av jourhavande socialsekreterare. "
        "Hon samtycker inte men förstår varför.",
    ),
    "barnets_installning": (None, "”Jag vill inte åka hem i natt.”"),
    "forslag": (None, DECISION.format(pnr=PNR)),
    "polis": (False, "Nej"),
    "tidpunkt": ("2026-11-24T03:15:00+01:00", "2026-11-24 03:15"),
}


def make_report(
    form: FormTemplate = LVU,
    answers: dict[str, tuple[Any, str]] | None = None,
    *,
    case_number: str = "SJ-2026-0042",
    at: datetime = SUBMITTED,
) -> dict[str, Any]:
    """A submitted report built the way the bot builds it (``build_report``)."""
    state = DialogueState(form_id=form.id)
    for field_id, (value, display) in (answers or LVU_ANSWERS).items():
        state.answers[field_id] = {
            "value": display if value is None else value,
            "display": display,
            "by": "@anna:example.org",
            "at": "2026-11-24T03:00:00+01:00",
        }
    return build_report(
        form, state, case_number=case_number, submitted_by="@anna:example.org", at=at
    )


def render(report: dict[str, Any] | None = None, **options: Any) -> bytes:
    arguments: dict[str, Any] = {
        "municipality_name": "Skövde kommun",
        "signer_name": "Dag Dagsson",
        "signer_role": "ordförande",
    }
    arguments.update(options)
    form = arguments.pop("form", LVU)
    return render_decision(report or make_report(), form, **arguments)


def poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        unavailable(f"{tool} not installed: apt-get install poppler-utils")
    return found


def pdf_text(pdf: bytes, tmp_path: Path, *, name: str = "decision.pdf") -> str:
    """pdftotext's reading of the PDF, whitespace collapsed so wrapped lines still match."""
    path = tmp_path / name
    path.write_bytes(pdf)
    done = subprocess.run(
        [poppler("pdftotext"), "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return " ".join(done.stdout.decode("utf-8").split())


def screenshot(pdf: bytes, target: Path, *, page: int = 1) -> Path:
    """The page as a PNG (pdftoppm), kept in test-artifacts/ for a person to look at."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source = target.with_suffix(".pdf")
    source.write_bytes(pdf)
    stem = target.with_suffix("")
    subprocess.run(
        [
            poppler("pdftoppm"),
            "-png",
            "-r",
            "100",
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            str(source),
            str(stem),
        ],
        check=True,
        timeout=60,
    )
    source.unlink()
    return target


# -- content -----------------------------------------------------------------------------


def test_the_same_report_renders_to_the_same_bytes() -> None:
    first, second = render(), render()
    assert first == second
    assert first.startswith(b"%PDF-")
    assert render(make_report(at=datetime(2026, 11, 24, 2, 21, tzinfo=UTC))) != first


def test_the_creation_date_is_the_submission_time() -> None:
    reader = PdfFileReader(BytesIO(render()))
    info = reader.trailer["/Info"].get_object()
    assert str(info["/CreationDate"]) == "D:20261124022000+00'00'"
    assert str(info["/Title"]) == "Beslut SJ-2026-0042"
    assert "Elsa" not in str(info)  # no personal data in the metadata


def test_the_document_says_what_the_decision_is_and_why(tmp_path: Path) -> None:
    text = pdf_text(render(), tmp_path)
    for expected in (
        "Skövde kommun",
        "Socialnämnden",
        "Beslut",
        "SJ-2026-0042",
        "2026-11-24",
        LVU.decision_type,
        LVU.legal_reference,
        DECISION.format(pnr=PNR),
        "1. Barnets namn Elsa Åström",
        "Hon har blåmärken på båda armarna",
        "grannar hörde skrik & slag i lägenheten",
        "sprang till grannen <Öberg> och",
        "”Jag vill inte åka hem i natt.”",
        "Missförhållanden i hemmet (2 §)",
        "Beslutsfattare",
        "Dag Dagsson",
        "ordförande",
        "Beslutet är undertecknat elektroniskt; se signaturen.",
        "Nästa steg",
        " ".join(LVU.next_step.split()),
        "Hur man överklagar",
        " ".join(LVU.appeal.split()),
        "@anna:example.org",
        "Sida 1 av 2",
        "Sida 2 av 2",
    ):
        assert expected in text, expected
    # the decision field is the decision, not one of the grounds
    assert "Förslag till beslut" not in text
    assert text.count("omhändertas omedelbart med stöd av 6 § LVU") == 1
    # the answers come in the form's order
    assert text.index("Barnets namn") < text.index("Vad har hänt?") < text.index("Tidpunkt")


MEMBER = Mandate(
    chair=False,
    appointed_by="Socialnämnden",
    appointed_on=date(2023, 1, 26),
    minutes_ref="§ 12",
    valid_until=date(2026, 12, 31),
)
CHAIR = Mandate(
    chair=True,
    appointed_by="Kommunfullmäktige",
    appointed_on=date(2023, 1, 12),
    minutes_ref="§ 4",
    valid_until=date(2026, 12, 31),
)


def test_the_document_states_the_mandate_of_an_appointed_member(tmp_path: Path) -> None:
    text = pdf_text(
        render(signer_name="Eva Evasdotter", signer_role="vice ordförande", mandate=MEMBER),
        tmp_path,
    )
    assert "Roll vice ordförande" in text
    assert (
        "Beslutanderätt Ledamot förordnad av Socialnämnden den 2023-01-26, § 12 "
        "(gäller till och med 2026-12-31), med stöd av 6 § andra stycket LVU, då nämndens "
        "beslut inte kunde avvaktas."
    ) in text


def test_the_document_states_the_chairs_mandate_and_the_configured_body(
    tmp_path: Path,
) -> None:
    pdf = render(body_name="Individ- och familjenämnden", mandate=CHAIR)
    text = pdf_text(pdf, tmp_path)
    assert text.startswith("Skövde kommun Ärende SJ-2026-0042 Individ- och familjenämnden ")
    assert "Socialnämnden" not in text
    assert (
        "Ordförande i Individ- och familjenämnden, vald av Kommunfullmäktige den 2023-01-12, "
        "§ 4 (gäller till och med 2026-12-31), med stöd av 6 § andra stycket LVU"
    ) in text
    info = PdfFileReader(BytesIO(pdf)).trailer["/Info"].get_object()
    assert str(info["/Author"]) == "Skövde kommun, Individ- och familjenämnden"


def test_lvm_cites_13_section_and_other_forms_no_statute(tmp_path: Path) -> None:
    forms = builtin_forms()
    for form_id, basis in (("lvm13", "med stöd av 13 § LVM, då nämndens"), ("sol_placering", None)):
        form = forms[form_id]
        answers = {spec.id: (None, f"Svar på {spec.label.lower()}") for spec in form.fields}
        text = pdf_text(
            render(make_report(form, answers), form=form, mandate=MEMBER),
            tmp_path,
            name=f"{form_id}.pdf",
        )
        assert "Ledamot förordnad av Socialnämnden den 2023-01-26, § 12" in text
        if basis is None:
            assert "med stöd av" not in text.split("Beslutanderätt")[1].split("Beslutat")[0]
        else:
            assert basis in text


def test_english_states_the_mandate_and_the_decision_date(tmp_path: Path) -> None:
    decided = datetime(2026, 11, 24, 23, 10, tzinfo=UTC)  # 00:10 on the 25th in Stockholm
    text = pdf_text(render(language="en", mandate=MEMBER, decided_at=decided), tmp_path)
    assert (
        "Power to decide Member appointed by Socialnämnden on 2023-01-26, § 12 (valid until "
        "2026-12-31 inclusive), under section 6, second paragraph, LVU, as the committee's "
        "decision could not be awaited."
    ) in text
    assert "Decision date 2026-11-25" in text and "Decided 2026-11-25 at 00:10" in text


def test_the_version_to_review_says_the_decision_date_is_the_day_of_signing(
    tmp_path: Path,
) -> None:
    text = pdf_text(render(mandate=MEMBER), tmp_path)
    assert "Beslutsdatum dagen för underskriften" in text
    assert "Beslutat när beslutet undertecknas; beslutsdatum är dagen för underskriften" in text


def test_the_decided_version_carries_the_signature_day_not_the_reports(tmp_path: Path) -> None:
    """Sent at 23:50, signed at 00:10 Stockholm time: the decision is the next day's."""
    submitted = datetime(2026, 11, 24, 22, 50, tzinfo=UTC)  # 23:50 in Stockholm
    decided = datetime(2026, 11, 24, 23, 10, tzinfo=UTC)  # 00:10 on the 25th
    report = make_report(at=submitted)
    review = render(report, mandate=MEMBER)
    pdf = render(report, mandate=MEMBER, decided_at=decided)

    text = pdf_text(pdf, tmp_path)
    assert "Beslutsdatum 2026-11-25" in text
    assert "Beslutat 2026-11-25 kl. 00:10" in text
    assert "upprättat 2026-11-24 kl. 23:50" in text  # the report keeps its own time
    assert "dagen för underskriften" not in text
    assert pdf == render(report, mandate=MEMBER, decided_at=decided)  # still the same bytes
    assert pdf != review
    info = PdfFileReader(BytesIO(pdf)).trailer["/Info"].get_object()
    assert str(info["/CreationDate"]) == "D:20261124231000+00'00'"


def test_user_text_cannot_inject_markup(tmp_path: Path) -> None:
    answers = dict(LVU_ANSWERS)
    answers["vistelse"] = (None, '<b>fet</b> & <font size="40">stor</font> &amp; <br/>')
    text = pdf_text(render(make_report(answers=answers)), tmp_path)
    assert '<b>fet</b> & <font size="40">stor</font> &amp; <br/>' in text


def test_letters_helvetica_lacks_are_simplified_not_dropped(tmp_path: Path) -> None:
    answers = dict(LVU_ANSWERS)
    answers["namn"] = (None, "Ayşe Çelik Nowak\u200b")
    text = pdf_text(render(make_report(answers=answers)), tmp_path)
    assert "Ayse Çelik Nowak" in text


def test_a_skipped_question_says_so(tmp_path: Path) -> None:
    answers = dict(LVU_ANSWERS)
    del answers["barnets_installning"]
    report = make_report(answers=answers)
    report["answers"] = [
        {**a, "value": None, "display": None} if a["id"] == "placering" else a
        for a in report["answers"]
    ]
    text = pdf_text(render(report), tmp_path)
    assert "Var placeras barnet? Ingen uppgift." in text


def test_english_headings_keep_the_answers_as_written(tmp_path: Path) -> None:
    text = pdf_text(render(language="en"), tmp_path)
    # The template's English appeal text, not the Swedish one.
    assert "cannot be appealed" in " ".join(text.split())
    assert "kan inte överklagas" not in " ".join(text.split())
    for expected in (
        "Social Welfare Committee",
        "Decision",
        "Case SJ-2026-0042",
        "Legal basis",
        "Facts and grounds",
        "Decision-maker",
        "Chair",
        "The decision is signed electronically; see the signature.",
        "Next step",
        "How to appeal",
        "Page 1 of 2",
        "Hon har blåmärken",  # answers stay in Swedish
    ):
        assert expected in text, expected
    assert "Beslutsunderlag" not in text


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        render(language="de")


def test_every_shipped_form_renders(tmp_path: Path) -> None:
    for form in builtin_forms().values():
        answers = {spec.id: (None, f"Svar på {spec.label.lower()}") for spec in form.fields}
        pdf = render(make_report(form, answers), form=form)
        text = pdf_text(pdf, tmp_path, name=f"{form.id}.pdf")
        assert form.decision_type in text
        assert form.decision_field is not None
        assert f"Svar på {form.decision_field.label.lower()}" in text


def test_a_long_report_flows_over_pages_and_keeps_the_box_whole(tmp_path: Path) -> None:
    answers = dict(LVU_ANSWERS)
    paragraph = "Uppgifter från polisen, skolan och grannarna om vad som hänt. " * 60
    for field_id in ("handelse", "bradskande", "vardnadshavare", "underrattelse"):
        answers[field_id] = (None, paragraph.strip())
    layout = layout_decision(
        make_report(answers=answers),
        LVU,
        municipality_name="Skövde kommun",
        signer_name="Dag Dagsson",
        signer_role="ordförande",
    )
    assert layout.pages >= 4
    text = pdf_text(layout.pdf, tmp_path)
    assert f"Sida {layout.pages} av {layout.pages}" in text
    assert 0 <= layout.signature_box.page < layout.pages


# -- the reserved signature box -----------------------------------------------------------


def test_the_reserved_box_is_an_empty_signature_field_where_the_layout_says() -> None:
    layout = layout_decision(
        make_report(),
        LVU,
        municipality_name="Skövde kommun",
        signer_name="Dag Dagsson",
        signer_role="ordförande",
    )
    box = layout.signature_box
    width, height = SIGNATURE_BOX_SIZE
    assert (box.x2 - box.x1, box.y2 - box.y1) == (width, height)
    assert 0 < box.x1 < box.x2 < 595 and 0 < box.y1 < box.y2 < 842
    reader = PdfFileReader(BytesIO(layout.pdf))
    fields = list(enumerate_sig_fields(reader, filled_status=None))
    assert [(name, value) for name, value, _ in fields] == [(SIGNATURE_FIELD, None)]
    widget = fields[0][2].get_object()
    assert [float(v) for v in widget["/Rect"]] == [box.x1, box.y1, box.x2, box.y2]
    page = reader.root["/Pages"]["/Kids"][box.page].get_object()
    assert fields[0][2] in [annotation for annotation in page["/Annots"]]
    assert layout.pdf == render()


def test_an_unsigned_decision_has_no_signatures_yet() -> None:
    report = verify_bytes(render())
    assert report.error is None and report.signatures == () and not report.ok
    assert not report.evidence_present


def test_a_screenshot_of_the_first_page_is_kept() -> None:
    target = screenshot(render(), ARTIFACTS / "decision.png")
    assert target.stat().st_size > 10_000
    assert target.read_bytes().startswith(b"\x89PNG")


def test_every_page_says_how_many_pages_there_are_whatever_was_laid_out_before(
    tmp_path: Path,
) -> None:
    """A document laid out again (the decided version of the reviewed one) reuses the
    page count it had; a count that no longer holds (the text grew) is corrected,
    so the footers never lie and the bytes are those of a fresh layout."""
    import signing.document as document

    report = make_report()
    document._PAGES_SEEN.clear()
    fresh = render(report)
    pages = layout_decision(
        report,
        LVU,
        municipality_name="Skövde kommun",
        signer_name="Dag Dagsson",
        signer_role="ordförande",
    ).pages
    assert pages >= 2
    assert render(report) == fresh  # laid out again with the count it had
    for wrong in (1, pages + 3):
        for key in list(document._PAGES_SEEN):
            document._PAGES_SEEN[key] = wrong
        assert render(report) == fresh
    text = pdf_text(fresh, tmp_path)
    assert f"Sida {pages} av {pages}" in text
    assert f"Sida 1 av {pages}" in text
