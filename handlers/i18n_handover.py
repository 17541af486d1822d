"""What the bot says about execution and handover (issue 9 §2). Merged into
``handlers.i18n``'s catalogues.

Nothing here names the person a case is about: the messages to the intake room
and the duty room carry the case number, the decision's title and dates only
(the documents travel as encrypted attachments). ``{members}`` and ``{leads}``
become mentions (see ``handlers.handover.with_mentions``).
"""

from __future__ import annotations

__all__ = ["HANDOVER_MESSAGES"]

_SV: dict[str, str] = {
    # -- !verkställt --
    "execution.not_signed": (
        "```!verkställt``` används när beslutet är undertecknat och har verkställts. "
        "Skriv ```!status``` för läget."
    ),
    "execution.already": "Verkställigheten är redan registrerad: {time}.",
    "execution.started": (
        "**Verkställighet – ärende {number}**\n"
        "{count} frågor om hur beslutet verkställdes, en i taget. ```!tillbaka```, "
        "```!ändra N```, ```!hoppa``` och ```!sammanfattning``` fungerar som i rapporten."
    ),
    "execution.complete": "**Alla frågor om verkställigheten i ärende {number} är besvarade.**",
    "execution.confirm_hint": (
        "Skriv ```!verkställt``` för att registrera verkställigheten, eller "
        "```!ändra N``` för att ändra ett svar."
    ),
    "execution.recorded": (
        "**Verkställigheten är registrerad** för ärende {number}: verkställt {time}.\n"
        "Nästa steg: överlämna till hemkommunen med ```!överlämna```."
    ),
    "execution.future": (
        "{time} har inte hänt än. Skriv när beslutet verkställdes, t.ex. ```nu``` "
        "eller ```2026-11-24 04:10```."
    ),
    "execution.before_decision": (
        "{time} är före beslutet ({decided}). Ett beslut verkställs efter att det fattats: "
        "skriv tidpunkten igen."
    ),
    "execution.status.asking": "Verkställighet: frågorna besvaras (fråga {number} av {total}).",
    "execution.status.confirm": (
        "Verkställighet: alla frågor besvarade – registrera med ```!verkställt```."
    ),
    "execution.status.done": "Verkställt: {time} (registrerat av {by}).",
    # -- !överlämna --
    "handover.not_executed": (
        "Ärendet kan överlämnas när verkställigheten är registrerad med ```!verkställt```."
    ),
    "handover.no_municipality": (
        "Ärendet saknar hemkommun. Ange den i rapporten innan ärendet överlämnas."
    ),
    "handover.no_intake": (
        "{municipality} har inget mottagningsrum som Socialjour når just nu. "
        "Kontakta administratören; inget har gått förlorat."
    ),
    "handover.already": "Ärendet överlämnades redan {date} kl. {time}.",
    "handover.pending": (
        "Överlämningen är registrerad, men allt har inte kommit fram till mottagningen än. "
        "Socialjour skickar resten automatiskt."
    ),
    "handover.intake": (
        "**Överlämnat ärende {number}**\n"
        "{members}\n"
        "Beslut: {title}, beslutsdatum {date}.\n"
        "Handlingarna finns som krypterade bilagor ovan ({count} st): {files}.\n"
        "Kvittera genom att svara på det här meddelandet med ```!mottaget```."
    ),
    "handover.done": (
        "**Ärende {number} är överlämnat** till mottagningen i {municipality}: "
        "{count} handlingar ({files}). "
        "Mottagningen kvitterar med ```!mottaget```."
    ),
    "handover.reminder": (
        "**Påminnelse: ärende {number} är inte kvitterat**\n"
        "{members}\n"
        "Överlämnat {date} kl. {time}. Svara på överlämningsmeddelandet med ```!mottaget``` "
        "eller skriv ```!mottaget {number}```."
    ),
    "handover.leads": (
        "**Ärende {number}: överlämningen är inte kvitterad**\n"
        "{members}\n"
        "Mottagningen i {municipality} har inte kvitterat ärendet som överlämnades "
        "{date} kl. {time}, trots {reminders} påminnelser. Kontakta mottagningen."
    ),
    # -- !mottaget --
    "handover.received.unknown": (
        "Jag hittar inget överlämnat ärende att kvittera här. Svara på "
        "överlämningsmeddelandet med ```!mottaget```, eller skriv "
        "```!mottaget``` följt av ärendenumret."
    ),
    "handover.received.already": (
        "Ärende **{number}** är redan kvitterat av {user} {date} kl. {time}."
    ),
    "handover.received.ack": "Tack! Ärende **{number}** är kvitterat av {user} kl. {time}.",
    "handover.received.case": "**Mottaget** av {user} kl. {time} ({date}): ärende {number}.",
    # -- !status --
    "handover.status.sending": "Överlämning till {municipality} pågår.",
    "handover.status.waiting": (
        "Överlämnat till {municipality} {date} kl. {time}; väntar på kvittens "
        "(påminnelser: {reminders})."
    ),
    "handover.status.received": (
        "Överlämnat till {municipality}; mottaget av {user} {date} kl. {time}."
    ),
}

_EN: dict[str, str] = {
    # -- !executed --
    "execution.not_signed": (
        "```!executed``` is for a decision that is signed and has been carried out. "
        "Type ```!status``` to see where the case stands."
    ),
    "execution.already": "The execution is recorded already: {time}.",
    "execution.started": (
        "**Execution – case {number}**\n"
        "{count} questions on how the decision was carried out, one at a time. "
        "```!back```, ```!edit N```, ```!skip``` and ```!summary``` work as in the report."
    ),
    "execution.complete": "**Every question on the execution of case {number} is answered.**",
    "execution.confirm_hint": (
        "Type ```!executed``` to record the execution, or ```!edit N``` to change an answer."
    ),
    "execution.recorded": (
        "**The execution is recorded** for case {number}: carried out {time}.\n"
        "Next: hand over to the home municipality with ```!handover```."
    ),
    "execution.future": (
        "{time} has not happened yet. Give the time the decision was carried out, e.g. "
        "```now``` or ```2026-11-24 04:10```."
    ),
    "execution.before_decision": (
        "{time} is before the decision ({decided}). A decision is carried out after it is "
        "made: give the time again."
    ),
    "execution.status.asking": "Execution: being recorded (question {number} of {total}).",
    "execution.status.confirm": (
        "Execution: every question answered – record it with ```!executed```."
    ),
    "execution.status.done": "Carried out: {time} (recorded by {by}).",
    # -- !handover --
    "handover.not_executed": (
        "The case can be handed over once the execution is recorded with ```!executed```."
    ),
    "handover.no_municipality": (
        "The case has no home municipality. Give it in the report before handing over."
    ),
    "handover.no_intake": (
        "{municipality} has no intake room that Socialjour can reach right now. "
        "Contact the administrator; nothing has been lost."
    ),
    "handover.already": "The case was handed over already, {date} at {time}.",
    "handover.pending": (
        "The handover is recorded, but not everything has reached the intake room yet. "
        "Socialjour sends the rest by itself."
    ),
    "handover.intake": (
        "**Case {number} handed over**\n"
        "{members}\n"
        "Decision: {title}, decision date {date}.\n"
        "The documents are the encrypted attachments above ({count}): {files}.\n"
        "Acknowledge by replying to this message with ```!received```."
    ),
    "handover.done": (
        "**Case {number} is handed over** to the intake in {municipality}: "
        "{count} documents ({files}). The intake acknowledges with ```!received```."
    ),
    "handover.reminder": (
        "**Reminder: case {number} is not acknowledged**\n"
        "{members}\n"
        "Handed over {date} at {time}. Reply to the handover message with ```!received``` "
        "or type ```!received {number}```."
    ),
    "handover.leads": (
        "**Case {number}: the handover is not acknowledged**\n"
        "{members}\n"
        "The intake in {municipality} has not acknowledged the case handed over "
        "{date} at {time}, after {reminders} reminders. Contact the intake."
    ),
    # -- !received --
    "handover.received.unknown": (
        "I find no handed-over case to acknowledge here. Reply to the handover message "
        "with ```!received```, or type ```!received``` and the case number."
    ),
    "handover.received.already": (
        "Case **{number}** was acknowledged already by {user}, {date} at {time}."
    ),
    "handover.received.ack": "Thank you! Case **{number}** is acknowledged by {user} at {time}.",
    "handover.received.case": "**Received** by {user} at {time} ({date}): case {number}.",
    # -- !status --
    "handover.status.sending": "Handover to {municipality} under way.",
    "handover.status.waiting": (
        "Handed over to {municipality} {date} at {time}; waiting for acknowledgement "
        "(reminders: {reminders})."
    ),
    "handover.status.received": (
        "Handed over to {municipality}; received by {user}, {date} at {time}."
    ),
}

HANDOVER_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
