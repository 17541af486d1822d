"""Every sentence the bot says, in Swedish and English.

Templates use ``{name}`` placeholders and two light markers that render both as
plain text and as HTML: ``**bold**`` and ```code```. Parameters are escaped for
HTML, so user-controlled text can never inject markup.
"""

from __future__ import annotations

import html
import re
from typing import Any, Literal

from handlers.i18n_archive import ARCHIVE_MESSAGES
from handlers.i18n_audit import AUDIT_MESSAGES
from handlers.i18n_deadlines import DEADLINES_MESSAGES
from handlers.i18n_escalation import ESCALATION_MESSAGES
from handlers.i18n_fields import FIELD_MESSAGES
from handlers.i18n_handover import HANDOVER_MESSAGES
from handlers.i18n_rooms import ROOMS_MESSAGES
from handlers.i18n_signers import SIGNER_MESSAGES
from handlers.i18n_trust import TRUST_MESSAGES
from handlers.messenger import Message

Language = Literal["sv", "en"]

_SV: dict[str, str] = {
    "status.drafting": "utkast",
    "status.awaiting_signature": "väntar på underskrift",
    "status.signed": "undertecknat",
    "status.declined": "avslaget av beslutsfattaren",
    "status.executed": "verkställt",
    "status.handed_over": "överlämnat",
    "status.closed": "avslutat",
    "status.cancelled": "avbrutet",
    "case.created": (
        "Ärende **{number}** är öppnat. Du har fått en inbjudan till ärenderummet "
        "– det heter bara **{number}**."
    ),
    "case.welcome": (
        "**Ärende {number}**\n"
        "Det här rummet är krypterat och bara du och Socialjour är med.\n"
        "Nästa steg: du dokumenterar ärendet här, en fråga i taget. Sedan skickar "
        "du beslutet till jourhavande beslutsfattare för underskrift.\n"
        "Skriv ```!hjälp``` för kommandona, ```!status``` för läget och "
        "```!avbryt``` om ärendet inte ska drivas vidare."
    ),
    "case.resumed": "Ärende **{number}** återupptogs efter ett avbrott. Inget har gått förlorat.",
    "case.status": "**Ärende {number}**\nLäge: {status}\nÖppnat: {created} av {created_by}\n{next}",
    "case.next.drafting": "Nästa steg: handläggaren dokumenterar ärendet och skickar det med ```!skicka```.",
    "case.next.awaiting_signature": "Nästa steg: beslutsfattaren undertecknar eller avslår.",
    "case.next.signed": "Nästa steg: verkställ beslutet och skriv ```!verkställt```.",
    "case.next.declined": "Beslutsfattaren avslog. Revidera underlaget eller avsluta ärendet.",
    "case.next.executed": "Nästa steg: överlämna till hemkommunen med ```!överlämna```.",
    "case.next.handed_over": "Överlämnat. Hemkommunen kvitterar med ```!mottaget```.",
    "case.next.closed": "Ärendet är avslutat.",
    "case.next.cancelled": "Ärendet är avbrutet.",
    "duty.status.none": "Inga öppna ärenden just nu.",
    "duty.status.header": "**Öppna ärenden ({count})**",
    "duty.status.line": "• **{number}** – {status} – öppnat {created}",
    "cancel.confirm": (
        "Vill du avbryta ärende **{number}**? Det går inte att ångra. "
        "Skriv ```!avbryt ja``` inom {minutes} minuter för att bekräfta."
    ),
    "cancel.done": "Ärende **{number}** är avbrutet av {user}. Rummet finns kvar som dokumentation.",
    "cancel.no_request": "Det finns ingen begäran om att avbryta. Skriv ```!avbryt``` först.",
    "help.duty": (
        "**Kommandon i jourrummet**\n"
        "```!ny``` – öppna ett nytt ärende (du bjuds in till ett eget krypterat rum)\n"
        "```!status``` – öppna ärenden\n"
        "```!jour``` – vem som har beslutsjour\n"
        "```!hjälp``` – den här listan"
    ),
    "help.case": (
        "**Kommandon i ärenderummet**\n"
        "```!status``` – ärendets läge och vem som ska agera\n"
        "```!tillbaka```, ```!ändra N```, ```!hoppa```, ```!sammanfattning``` – rapporten\n"
        "```!skicka``` – skicka beslutet för underskrift\n"
        "```!påminn``` – larma beslutsfattaren igen nu; ```!skicka om``` – en ny länk\n"
        "```!verkställt```, ```!överlämna``` – efter beslutet\n"
        "```!underställt```, ```!ansökt```, ```!anmält``` – en frist är gjord; "
        "```!rättens beslut DATUM fastställt``` (eller ```upphävt```) – rättens beslut\n"
        "```!logg``` – ärendets händelser\n"
        "```!avbryt``` – avbryt ärendet (du får bekräfta)\n"
        "```!hjälp``` – den här listan"
    ),
    "help.other": "Socialjour används i jourrummet och i ärenderummen. Skriv ```!hjälp``` där.",
    "error.not_allowed": (
        "Du har inte behörighet att använda Socialjour här. "
        "Kontakta jourens samordnare om du behöver åtkomst."
    ),
    "error.untrusted_device": (
        "Ditt meddelande kom från en enhet som inte är verifierad. Verifiera enheten "
        "i Element (Inställningar → Sessioner) och försök igen."
    ),
    "error.unknown_command": "Okänt kommando ```{command}```. Skriv ```!hjälp``` för en lista.",
    "error.wrong_room": "```{command}``` används i {where}.",
    "error.case_not_found": "Det här rummet hör inte till något ärende.",
    "error.illegal_transition": (
        "Det går inte just nu: ärendet är {old_label} och kan inte bli {new_label}."
    ),
    "error.concurrent_change": "Ärendet ändrades samtidigt av någon annan. Skriv ```!status``` och försök igen.",
    "error.room_creation_failed": (
        "Ärende **{number}** är registrerat, men rummet kunde inte skapas just nu. "
        "Socialjour försöker igen automatiskt – inget har gått förlorat."
    ),
    "error.internal": "Något gick fel hos Socialjour. Inget har gått förlorat; försök igen om en stund.",
    "error.not_yet": "```{command}``` är inte tillgängligt i den här versionen ännu.",
    "error.undecryptable": (
        "Socialjour kunde inte läsa ditt senaste meddelande (krypteringsnyckeln kom aldrig fram). "
        "Skicka det igen."
    ),
    "error.identity_changed": (
        "Säkerhetsvarning: krypteringsidentiteten för {user} har ändrats. Socialjour skickar inga "
        "krypterade meddelanden till den personen förrän en administratör har bekräftat den nya "
        "identiteten (```socialjour trust accept {user} --fingerprint …```)."
    ),
    "report.choose_form": "**Vilket beslut gäller ärendet?**\n{options}\nSvara med siffran eller välj i omröstningen.",
    "report.choose_form.poll": "Vilket beslut gäller ärendet?",
    "report.unknown_form": "Det finns inget formulär som heter ”{name}”. Välj ett i listan.",
    "report.no_form": "Välj först vilket beslut ärendet gäller.",
    "report.form_chosen": (
        "Formulär: **{title}** ({count} frågor). En fråga i taget. När som helst: ```!tillbaka```, "
        "```!ändra N```, ```!hoppa``` (valfria frågor), ```!sammanfattning```, ```!avbryt```."
    ),
    "report.question": "**Fråga {number} av {total}** – {label}",
    "report.help": "{help}",
    "report.options": "{options}",
    "report.yes": "Ja",
    "report.no": "Nej",
    "report.question.optional": "Valfri fråga – skriv ```!hoppa``` för att hoppa över.",
    "report.question.current": "Nuvarande svar: {answer}",
    "report.complete": (
        "Alla frågor är besvarade. Skriv ```!sammanfattning``` för att läsa igenom, "
        "```!ändra N``` för att ändra ett svar och ```!skicka``` när allt stämmer."
    ),
    "report.summary.header": "**Sammanfattning – {number}**\n{title}",
    "report.summary.item": "**{n}. {label}**\n{answer}",
    "report.summary.unanswered": "– (inte besvarad)",
    "report.summary.skipped": "– (överhoppad)",
    "report.not_optional": "Fråga {number} är obligatorisk och kan inte hoppas över.",
    "report.back.none": "Det här är den första frågan.",
    "report.edit.usage": "Skriv ```!ändra N``` där N är frågans nummer (1–{max}).",
    "report.edit.hidden": "Fråga {number} gäller inte med de svar som har getts.",
    "report.edit_applied": "Svaret på fråga {number} är ändrat till: {answer}",
    "report.edit_too_old": (
        "Bara det senaste svaret kan ändras genom att redigera meddelandet. "
        "Skriv ```!ändra N``` för att ändra en tidigare fråga."
    ),
    "report.old_poll": "Den omröstningen gäller inte längre. Svara på den senaste frågan.",
    "report.missing": "Rapporten är inte klar. Obligatoriska frågor utan svar: {numbers}.",
    "report.locked": "Rapporten är redan skickad och kan inte ändras nu.",
    "answer.edit_not_author": (
        "Bara den som skrev ett svar kan ändra det. Svaret på fråga {number} står kvar."
    ),
    "answer.redact_not_author": (
        "Bara den som skrev ett svar, eller en moderator i rummet, kan ta bort det. "
        "Svaret på fråga {number} står kvar."
    ),
    "answer.removed.ask_again": (
        "Svaret på fråga {number} togs bort. Frågan måste besvaras, så den ställs igen."
    ),
    "answer.removed.ask_later": (
        "Svaret på fråga {number} togs bort. Frågan måste besvaras och ställs igen "
        "när du kommer till den."
    ),
    "answer.removed.left_open": (
        "Svaret på fråga {number} togs bort. Frågan lämnas obesvarad; skriv "
        "```!ändra {number}``` om du vill svara på den igen."
    ),
    "answer.removed.too_late": (
        "Meddelandet togs bort, men svaret på fråga {number} står kvar: "
        "det är redan inskickat och kan inte ändras här längre."
    ),
    "report.reopened": "Rapporten är öppnad igen för revidering. Skicka den igen med ```!skicka```.",
    "report.submitted": (
        "Rapporten för **{number}** är skickad och låst ({title}, formulärversion {version}). "
        "Ärendet väntar nu på beslut."
    ),
    "oncall.header": "**Beslutsjour just nu** (i den ordning de tillfrågas)",
    "oncall.line": "**{municipality}**: {people}",
    "oncall.nobody": "ingen beslutsfattare inlagd",
    "oncall.person": "{name} ({role}, {source})",
    "oncall.source.override": "ändrat med !jour ersätt",
    "oncall.source.calendar": "enligt jourkalendern",
    "oncall.source.config": "enligt konfigurationen",
    "oncall.none": "Inga kommuner är inlagda i konfigurationen.",
    "oncall.override.usage": (
        "Skriv ```!jour ersätt @person:server FRÅN TILL```, t.ex. "
        "```!jour ersätt @dag:example.org nu 2026-11-25T08:00``` eller ```... 18:00 07:00```."
    ),
    "oncall.override.unknown": "{user} är inte beslutsfattare för någon kommun i konfigurationen.",
    "oncall.override.leads_only": "Bara jourens samordnare kan ändra beslutsjouren.",
    "oncall.override.done": "{user} har beslutsjour först för {municipalities} från {starts} till {ends}.",
    "decision.alert": (
        "**Brådskande beslut att underteckna**\n"
        "Ärende **{number}** – {decision_type}.\n"
        "Läs och underteckna här: {link}\n"
        "Länken är personlig och gäller till {expires}."
    ),
    "decision.requested": "Beslutet skickades till **{name}** ({role}) kl. {time} för underskrift.",
    "decision.alert_failed": (
        "Beslutet är klart för underskrift, men **{name}** kunde inte nås via Matrix just nu. "
        "Ring beslutsfattaren. Jourens samordnare: kontrollera jourlistan med ```!jour```."
    ),
    "decision.nobody_on_call": (
        "Ingen beslutsfattare har jour för **{municipality}** just nu, så beslutet kunde inte "
        "skickas. Rapporten är öppen igen. Jourens samordnare: lägg in jour med "
        "```!jour ersätt```, skriv sedan ```!skicka``` igen."
    ),
    "decision.signed": (
        "**Beslutet i {number} är undertecknat** av {name} ({role}). Det signerade "
        "dokumentet ligger ovan (SHA-256 {sha}). Nästa steg: verkställ och skriv "
        "```!verkställt```."
    ),
    "decision.declined": (
        "**{name} avslog beslutet i {number}.** Motivering: {reason}\n"
        "Revidera rapporten med ```!ändra N``` och skicka igen, eller avbryt med ```!avbryt```."
    ),
    "auth.code": (
        "Din engångskod för att underteckna **{number}**: **{code}**\n"
        "Koden gäller i tio minuter. Om det inte var du som begärde den: kontakta jouren."
    ),
    "where.duty": "jourrummet",
    "where.intake": "ett mottagningsrum",
    "help.intake": (
        "**Kommandon i mottagningsrummet**\n"
        "```!mottaget``` – svara på ett överlämnat ärende för att kvittera det\n"
        "```!underställt ÄRENDE```, ```!ansökt ÄRENDE```, ```!anmält ÄRENDE``` – en frist "
        "är gjord (eller svara på påminnelsen)\n"
        "```!rättens beslut DATUM fastställt ÄRENDE``` (eller ```upphävt```) – rättens beslut\n"
        "```!hjälp``` – den här listan"
    ),
    "where.case": "ett ärenderum",
}

_EN: dict[str, str] = {
    "status.drafting": "draft",
    "status.awaiting_signature": "awaiting signature",
    "status.signed": "signed",
    "status.declined": "declined by the decision-maker",
    "status.executed": "carried out",
    "status.handed_over": "handed over",
    "status.closed": "closed",
    "status.cancelled": "cancelled",
    "case.created": (
        "Case **{number}** is open. You have been invited to its room, which is named "
        "**{number}** and nothing else."
    ),
    "case.welcome": (
        "**Case {number}**\n"
        "This room is encrypted; only you and Socialjour are in it.\n"
        "Next: you document the case here, one question at a time. Then you send the "
        "decision to the on-call decision-maker for signature.\n"
        "Type ```!help``` for commands, ```!status``` for the state and ```!cancel``` if the "
        "case should not go ahead."
    ),
    "case.resumed": "Case **{number}** resumed after an interruption. Nothing was lost.",
    "case.status": "**Case {number}**\nState: {status}\nOpened: {created} by {created_by}\n{next}",
    "case.next.drafting": "Next: the worker documents the case and sends it with ```!submit```.",
    "case.next.awaiting_signature": "Next: the decision-maker signs or declines.",
    "case.next.signed": "Next: carry out the decision and type ```!executed```.",
    "case.next.declined": "The decision-maker declined. Revise the report or close the case.",
    "case.next.executed": "Next: hand over to the home municipality with ```!handover```.",
    "case.next.handed_over": "Handed over. The home municipality acknowledges with ```!received```.",
    "case.next.closed": "The case is closed.",
    "case.next.cancelled": "The case is cancelled.",
    "duty.status.none": "No open cases right now.",
    "duty.status.header": "**Open cases ({count})**",
    "duty.status.line": "• **{number}** – {status} – opened {created}",
    "cancel.confirm": (
        "Cancel case **{number}**? This cannot be undone. "
        "Type ```!cancel yes``` within {minutes} minutes to confirm."
    ),
    "cancel.done": "Case **{number}** was cancelled by {user}. The room stays as a record.",
    "cancel.no_request": "There is no request to cancel. Type ```!cancel``` first.",
    "help.duty": (
        "**Commands in the duty room**\n"
        "```!new``` – open a new case (you are invited to its own encrypted room)\n"
        "```!status``` – open cases\n"
        "```!oncall``` – who is on call\n"
        "```!help``` – this list"
    ),
    "help.case": (
        "**Commands in the case room**\n"
        "```!status``` – the case's state and who must act\n"
        "```!back```, ```!edit N```, ```!skip```, ```!summary``` – the report\n"
        "```!submit``` – send the decision for signature\n"
        "```!remind``` – alert the decision-maker again now; ```!resend``` – a fresh link\n"
        "```!executed```, ```!handover``` – after the decision\n"
        "```!submitted```, ```!applied```, ```!reported``` – a deadline's act is done; "
        "```!court DATE upheld``` (or ```revoked```) – the court's decision\n"
        "```!log``` – the case's events\n"
        "```!cancel``` – cancel the case (asks to confirm)\n"
        "```!help``` – this list"
    ),
    "help.other": "Socialjour is used in the duty room and the case rooms. Type ```!help``` there.",
    "error.not_allowed": (
        "You are not allowed to use Socialjour here. Contact the duty coordinator if you need access."
    ),
    "error.untrusted_device": (
        "Your message came from a device that is not verified. Verify it in Element "
        "(Settings → Sessions) and try again."
    ),
    "error.unknown_command": "Unknown command ```{command}```. Type ```!help``` for a list.",
    "error.wrong_room": "```{command}``` is used in {where}.",
    "error.case_not_found": "This room does not belong to a case.",
    "error.illegal_transition": "Not possible now: the case is {old_label} and cannot become {new_label}.",
    "error.concurrent_change": "Someone else changed the case at the same time. Type ```!status``` and try again.",
    "error.room_creation_failed": (
        "Case **{number}** is registered, but its room could not be created right now. "
        "Socialjour retries by itself – nothing was lost."
    ),
    "error.internal": "Something went wrong in Socialjour. Nothing was lost; try again in a moment.",
    "error.not_yet": "```{command}``` is not available in this version yet.",
    "error.undecryptable": (
        "Socialjour could not read your last message (its encryption key never arrived). "
        "Please send it again."
    ),
    "error.identity_changed": (
        "Security warning: the encryption identity of {user} has changed. Socialjour sends no "
        "encrypted messages to them until an administrator confirms the new identity "
        "(```socialjour trust accept {user} --fingerprint …```)."
    ),
    "report.choose_form": "**Which decision is this case about?**\n{options}\nAnswer with the number or choose in the poll.",
    "report.choose_form.poll": "Which decision is this case about?",
    "report.unknown_form": "There is no form called “{name}”. Choose one from the list.",
    "report.no_form": "First choose which decision the case is about.",
    "report.form_chosen": (
        "Form: **{title}** ({count} questions). One question at a time. At any time: ```!back```, "
        "```!edit N```, ```!skip``` (optional questions), ```!summary```, ```!cancel```."
    ),
    "report.question": "**Question {number} of {total}** – {label}",
    "report.help": "{help}",
    "report.options": "{options}",
    "report.yes": "Yes",
    "report.no": "No",
    "report.question.optional": "Optional – type ```!skip``` to skip it.",
    "report.question.current": "Current answer: {answer}",
    "report.complete": (
        "All questions are answered. Type ```!summary``` to read it through, ```!edit N``` to "
        "change an answer and ```!submit``` when everything is right."
    ),
    "report.summary.header": "**Summary – {number}**\n{title}",
    "report.summary.item": "**{n}. {label}**\n{answer}",
    "report.summary.unanswered": "– (not answered)",
    "report.summary.skipped": "– (skipped)",
    "report.not_optional": "Question {number} is required and cannot be skipped.",
    "report.back.none": "This is the first question.",
    "report.edit.usage": "Type ```!edit N``` where N is the question's number (1–{max}).",
    "report.edit.hidden": "Question {number} does not apply given the answers so far.",
    "report.edit_applied": "The answer to question {number} is now: {answer}",
    "report.edit_too_old": (
        "Only the latest answer can be changed by editing the message. "
        "Type ```!edit N``` to change an earlier question."
    ),
    "report.old_poll": "That poll no longer applies. Answer the latest question.",
    "report.missing": "The report is not complete. Required questions without an answer: {numbers}.",
    "report.locked": "The report has been submitted and cannot be changed now.",
    "answer.edit_not_author": (
        "Only the person who wrote an answer can edit it. "
        "The answer to question {number} stays as it was."
    ),
    "answer.redact_not_author": (
        "Only the person who wrote an answer, or a moderator of the room, can remove it. "
        "The answer to question {number} stays as it was."
    ),
    "answer.removed.ask_again": (
        "The answer to question {number} was removed. "
        "The question must be answered, so it is asked again."
    ),
    "answer.removed.ask_later": (
        "The answer to question {number} was removed. "
        "The question must be answered and is asked again when you get to it."
    ),
    "answer.removed.left_open": (
        "The answer to question {number} was removed. The question is left unanswered; "
        "type ```!edit {number}``` to answer it again."
    ),
    "answer.removed.too_late": (
        "The message was removed, but the answer to question {number} stays: "
        "it has been submitted and can no longer be changed here."
    ),
    "report.reopened": "The report is open again for revision. Submit it again with ```!submit```.",
    "report.submitted": (
        "The report for **{number}** is submitted and locked ({title}, form version {version}). "
        "The case now awaits a decision."
    ),
    "oncall.header": "**On call now** (in the order they are asked)",
    "oncall.line": "**{municipality}**: {people}",
    "oncall.nobody": "no decision-maker configured",
    "oncall.person": "{name} ({role}, {source})",
    "oncall.source.override": "set with !oncall replace",
    "oncall.source.calendar": "per the on-call calendar",
    "oncall.source.config": "per the config order",
    "oncall.none": "No municipalities are configured.",
    "oncall.override.usage": (
        "Type ```!oncall replace @person:server FROM TO```, e.g. "
        "```!oncall replace @dag:example.org now 2026-11-25T08:00``` or ```... 18:00 07:00```."
    ),
    "oncall.override.unknown": "{user} is not a decision-maker for any configured municipality.",
    "oncall.override.leads_only": "Only the duty leads can change who is on call.",
    "oncall.override.done": "{user} is on call first for {municipalities} from {starts} to {ends}.",
    "decision.alert": (
        "**Urgent decision to sign**\n"
        "Case **{number}** – {decision_type}.\n"
        "Read and sign here: {link}\n"
        "The link is personal and valid until {expires}."
    ),
    "decision.requested": "The decision was sent to **{name}** ({role}) at {time} for signature.",
    "decision.alert_failed": (
        "The decision is ready for signature, but **{name}** could not be reached over Matrix "
        "right now. Phone the decision-maker. Duty lead: check who is on call with ```!oncall```."
    ),
    "decision.nobody_on_call": (
        "No decision-maker is on call for **{municipality}** right now, so the decision could "
        "not be sent. The report is open again. Duty lead: set who is on call with "
        "```!oncall replace```, then type ```!submit``` again."
    ),
    "decision.signed": (
        "**The decision in {number} is signed** by {name} ({role}). The signed document is "
        "above (SHA-256 {sha}). Next: carry it out and type ```!executed```."
    ),
    "decision.declined": (
        "**{name} declined the decision in {number}.** Reason: {reason}\n"
        "Revise the report with ```!edit N``` and submit again, or cancel with ```!cancel```."
    ),
    "auth.code": (
        "Your one-time code to sign **{number}**: **{code}**\n"
        "It is valid for ten minutes. If you did not ask for it, contact the duty service."
    ),
    "where.duty": "the duty room",
    "where.intake": "an intake room",
    "help.intake": (
        "**Commands in the intake room**\n"
        "```!received``` – reply to a handed-over case to acknowledge it\n"
        "```!submitted CASE```, ```!applied CASE```, ```!reported CASE``` – a deadline's act "
        "is done (or reply to the reminder)\n"
        "```!court DATE upheld CASE``` (or ```revoked```) – the court's decision\n"
        "```!help``` – this list"
    ),
    "where.case": "a case room",
}

CATALOGUES: dict[str, dict[str, str]] = {
    "sv": {
        **_SV,
        **FIELD_MESSAGES["sv"],
        **ESCALATION_MESSAGES["sv"],
        **DEADLINES_MESSAGES["sv"],
        **HANDOVER_MESSAGES["sv"],
        **AUDIT_MESSAGES["sv"],
        **ARCHIVE_MESSAGES["sv"],
        **SIGNER_MESSAGES["sv"],
        **TRUST_MESSAGES["sv"],
        **ROOMS_MESSAGES["sv"],
    },
    "en": {
        **_EN,
        **FIELD_MESSAGES["en"],
        **ESCALATION_MESSAGES["en"],
        **DEADLINES_MESSAGES["en"],
        **HANDOVER_MESSAGES["en"],
        **AUDIT_MESSAGES["en"],
        **ARCHIVE_MESSAGES["en"],
        **SIGNER_MESSAGES["en"],
        **TRUST_MESSAGES["en"],
        **ROOMS_MESSAGES["en"],
    },
}

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"```(.+?)```")


def text(lang: str, key: str, **params: Any) -> str:
    """The plain-text rendering of a message."""
    template = CATALOGUES.get(lang, CATALOGUES["sv"])[key]
    plain = _CODE.sub(r"\1", _BOLD.sub(r"\1", template))
    return plain.format(**params)


def render(
    lang: str,
    key: str,
    *,
    reply_to: str | None = None,
    mentions: tuple[str, ...] = (),
    notice: bool = True,
    **params: Any,
) -> Message:
    """A message with a plain body and an HTML body whose parameters are escaped."""
    template = CATALOGUES.get(lang, CATALOGUES["sv"])[key]
    html_template = html.escape(template, quote=False)
    html_template = _BOLD.sub(r"<strong>\1</strong>", html_template)
    html_template = _CODE.sub(r"<code>\1</code>", html_template)
    html_template = html_template.replace("\n", "<br>")
    safe = {k: html.escape(str(v), quote=True) for k, v in params.items()}
    return Message(
        text=text(lang, key, **params),
        html=html_template.format(**safe),
        mentions=mentions,
        notice=notice,
        reply_to=reply_to,
    )


def join(messages: list[Message], *, reply_to: str | None = None) -> Message:
    """Several rendered lines as one message (lists read better as one bubble on a phone)."""
    return Message(
        text="\n".join(m.text for m in messages),
        html="<br>".join(m.html or html.escape(m.text) for m in messages),
        reply_to=reply_to,
    )
