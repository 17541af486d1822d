"""What the bot says about audit (issue 9). Merged into ``handlers.i18n``'s catalogues.

Nothing here names the person a case is about. ``audit.action.<action>`` is the
wording of each action of the trail (the vocabulary is in ``storage.audit``); its
placeholders are filled from the row's ``detail``.
"""

from __future__ import annotations

__all__ = ["AUDIT_MESSAGES"]

_SV: dict[str, str] = {
    "audit.log.header": "**Logg för ärende {number}** (svensk tid)",
    "audit.log.empty": "Inga händelser ännu.",
    "audit.log.trimmed": (
        "Visar de senaste {shown} av {total} händelserna. Hela loggen med dokumenten tar "
        "en administratör ut med ```socialjour audit export {number}```."
    ),
    "audit.log.line": "{time} · {actor} · {action}",
    "audit.actor.bot": "Socialjour",
    "audit.actor.web": "oidentifierad besökare",
    "audit.actor.cli": "{user} (kommandoraden)",
    "audit.channel.matrix": "Matrix",
    "audit.channel.sms": "sms",
    "audit.channel.call": "telefonsamtal",
    "audit.channel.email": "e-post",
    "audit.method.matrix-code": "Matrix-kod",
    "audit.method.bankid": "BankID",
    "audit.method.oidc": "e-legitimation",
    "audit.outcome.upheld": "fastställt",
    "audit.outcome.revoked": "upphävt",
    "audit.action.case.created": "öppnade ärendet",
    "audit.action.room.created": "skapade ärenderummet",
    "audit.action.status": "ärendet fick läget ”{status}”",
    "audit.action.answer.given": "besvarade fråga {question}",
    "audit.action.answer.changed": "ändrade svaret på fråga {question}",
    "audit.action.report.submitted": "skickade rapporten ({answers} svar)",
    "audit.action.document.rendered": (
        "beslutsdokumentet skapades för granskning (begäran {request})"
    ),
    "audit.action.signature.requested": "begärde underskrift av {signer} (begäran {request})",
    "audit.action.signature.resent": "skickade nya länkar, de gamla stängdes",
    "audit.action.link.sent": "länken skickades via {channel} (begäran {request})",
    "audit.action.link.opened": "signeringssidan öppnades (begäran {request})",
    "audit.action.link.opened.identified": (
        "öppnade signeringssidan efter identifiering (begäran {request})"
    ),
    "audit.action.identification.started": (
        "identifiering påbörjades med {method} (begäran {request})"
    ),
    "audit.action.signer.identified": "identifierade sig med {method} (begäran {request})",
    "audit.action.document.downloaded": "hämtade beslutet för granskning (begäran {request})",
    "audit.action.document.downloaded.signed": (
        "hämtade det undertecknade beslutet (begäran {request})"
    ),
    "audit.action.decision.signed": "undertecknade beslutet (begäran {request})",
    "audit.action.decision.declined": "avslog beslutet (begäran {request})",
    "audit.action.escalation.step": "eskalering: {step}",
    "audit.action.execution.recorded": "registrerade att beslutet verkställts",
    "audit.action.handover.sent": "överlämnade ärendet till hemkommunen",
    "audit.action.handover.received": "kvitterade överlämningen",
    "audit.action.handover.reminded": "mottagningen påmindes om överlämningen",
    "audit.action.deadline.started": "fristen {deadline} började löpa, sista dag {due}",
    "audit.action.deadline.marked": "markerade fristen {deadline} som klar",
    "audit.action.deadline.missed": "fristen {deadline} gick ut utan att markeras",
    "audit.action.court.decision": "registrerade rättens beslut: {outcome}",
    "audit.action.case.archived": "ärendet avslutades och rummet låstes",
    "audit.action.retention.deleted": "ärendets personuppgifter gallrades",
    "audit.action.trail.viewed": "visade ärendets logg",
    "audit.action.trail.exported": "tog ut ärendets logg och dokument",
}

_EN: dict[str, str] = {
    "audit.log.header": "**Log of case {number}** (Swedish time)",
    "audit.log.empty": "No events yet.",
    "audit.log.trimmed": (
        "Showing the newest {shown} of {total} events. An administrator gets the whole "
        "log with the documents with ```socialjour audit export {number}```."
    ),
    "audit.log.line": "{time} · {actor} · {action}",
    "audit.actor.bot": "Socialjour",
    "audit.actor.web": "unidentified visitor",
    "audit.actor.cli": "{user} (command line)",
    "audit.channel.matrix": "Matrix",
    "audit.channel.sms": "SMS",
    "audit.channel.call": "phone call",
    "audit.channel.email": "e-mail",
    "audit.method.matrix-code": "Matrix code",
    "audit.method.bankid": "BankID",
    "audit.method.oidc": "e-ID",
    "audit.outcome.upheld": "upheld",
    "audit.outcome.revoked": "revoked",
    "audit.action.case.created": "opened the case",
    "audit.action.room.created": "created the case room",
    "audit.action.status": "the case became “{status}”",
    "audit.action.answer.given": "answered question {question}",
    "audit.action.answer.changed": "changed the answer to question {question}",
    "audit.action.report.submitted": "submitted the report ({answers} answers)",
    "audit.action.document.rendered": "the decision was rendered for review (request {request})",
    "audit.action.signature.requested": "asked {signer} to sign (request {request})",
    "audit.action.signature.resent": "sent new links, the old ones were closed",
    "audit.action.link.sent": "the link was sent by {channel} (request {request})",
    "audit.action.link.opened": "the signing page was opened (request {request})",
    "audit.action.link.opened.identified": (
        "opened the signing page after identifying (request {request})"
    ),
    "audit.action.identification.started": (
        "identification was started with {method} (request {request})"
    ),
    "audit.action.signer.identified": "identified with {method} (request {request})",
    "audit.action.document.downloaded": "fetched the decision for review (request {request})",
    "audit.action.document.downloaded.signed": ("fetched the signed decision (request {request})"),
    "audit.action.decision.signed": "signed the decision (request {request})",
    "audit.action.decision.declined": "declined the decision (request {request})",
    "audit.action.escalation.step": "escalation: {step}",
    "audit.action.execution.recorded": "recorded that the decision was carried out",
    "audit.action.handover.sent": "handed the case over to the home municipality",
    "audit.action.handover.received": "acknowledged the handover",
    "audit.action.handover.reminded": "the intake room was reminded of the handover",
    "audit.action.deadline.started": "the deadline {deadline} started, last day {due}",
    "audit.action.deadline.marked": "marked the deadline {deadline} done",
    "audit.action.deadline.missed": "the deadline {deadline} passed without being marked",
    "audit.action.court.decision": "recorded the court's decision: {outcome}",
    "audit.action.case.archived": "the case was closed and its room locked",
    "audit.action.retention.deleted": "the case's personal data was deleted (retention)",
    "audit.action.trail.viewed": "viewed the case's log",
    "audit.action.trail.exported": "exported the case's log and documents",
}

AUDIT_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
