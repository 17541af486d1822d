"""What the bot says about who signs which form (issue 9 §1): delegate forms, the
worker's sealed record, refusals as decisions, and an on-call override for someone
who cannot decide. Merged into ``handlers.i18n``'s catalogues.

Nothing here names the person a case is about; the duty room is only told case
numbers, municipalities and the configuration to fix.
"""

from __future__ import annotations

__all__ = ["SIGNER_MESSAGES"]

_SV: dict[str, str] = {
    "status.recorded": "dokumenterat",
    "case.next.recorded": (
        "Dokumentationen är förseglad. Nästa steg: överlämna till hemkommunen med ```!överlämna```."
    ),
    "decision.refused": (
        "**{name} beslutade att inte fatta det föreslagna beslutet i {number}.** "
        "Skäl: {reason}\n"
        "Beslutet ligger ovan som förseglad PDF (SHA-256 {sha}) och finns kvar i akten. "
        "Revidera rapporten med ```!ändra N``` och skicka igen med ```!skicka```, eller "
        "avbryt med ```!avbryt```."
    ),
    "decision.no_delegate": (
        "Ingen delegat är inlagd för **{municipality}**, så beslutet kunde inte skickas. "
        "{title} beslutas enligt delegationsordningen, inte av en förtroendevald. "
        "Rapporten är öppen igen. Jourens samordnare har fått veta."
    ),
    "decision.no_delegate_leads": (
        "Ärende **{number}** kunde inte skickas: ingen delegat är inlagd för {municipality}. "
        "Lägg in delegaterna i konfigurationen (```[[municipalities.delegates]]```), starta "
        "om Socialjour och be handläggaren skriva ```!skicka``` igen."
    ),
    "record.sealed": (
        "**Dokumentationen i {number} är förseglad** som din dokumentation "
        "({title}). Den ligger ovan (SHA-256 {sha}) och finns kvar i akten. Ingen "
        "underskrift behövs: det här är handläggarens dokumentation, inget beslut. "
        "Nästa steg: överlämna till hemkommunen med ```!överlämna```."
    ),
    "record.no_seal": (
        "Dokumentationen kunde inte förseglas: ingen sigillnyckel är konfigurerad. "
        "Rapporten är öppen igen. Be administratören lägga in sigillet, skriv sedan "
        "```!skicka``` igen."
    ),
    "record.failed": (
        "Dokumentationen kunde inte skapas eller förseglas, så inget sparades. Rapporten är "
        "kvar som den var. Försök igen med ```!skicka```; händer det igen, kontakta jourens "
        "samordnare."
    ),
    "oncall.override.not_asked": (
        "**Obs!** {user} är inlagd först i beslutsjouren för {municipality} från {starts} "
        "till {ends}, men **kommer inte att tillfrågas om nämndbeslut**: {why} Bara "
        "ordföranden eller en ledamot som nämnden har förordnat får besluta när nämndens "
        "beslut inte kan avvaktas (6 § andra stycket LVU, 13 § LVM). Lägg in förordnandet "
        "i konfigurationen och starta om Socialjour, eller sätt någon annan i jouren."
    ),
    "oncall.override.partly": (
        "**Obs!** {user} är inlagd först i beslutsjouren för {municipality} från {starts} "
        "till {ends}, men förordnandet gäller bara till och med {until}: efter det "
        "tillfrågas {user} inte om nämndbeslut (6 § andra stycket LVU, 13 § LVM)."
    ),
    "oncall.override.partly_later": (
        "**Obs!** {user} är inlagd först i beslutsjouren för {municipality} från {starts} "
        "till {ends}, men förordnandet gäller först från {since}: före det tillfrågas "
        "{user} inte om nämndbeslut (6 § andra stycket LVU, 13 § LVM)."
    ),
    "oncall.override.why.none": "inget förordnande är inlagt i konfigurationen.",
    "oncall.override.why.ended": "förordnandet gick ut {until}.",
    "oncall.override.why.later": "förordnandet gäller först från {since}.",
    "audit.action.record.sealed": "förseglade dokumentationen (SHA-256 {sha256})",
}

_EN: dict[str, str] = {
    "status.recorded": "documented",
    "case.next.recorded": (
        "The record is sealed. Next: hand over to the home municipality with ```!handover```."
    ),
    "decision.refused": (
        "**{name} decided not to make the proposed decision in {number}.** "
        "Reasons: {reason}\n"
        "The decision is above as a sealed PDF (SHA-256 {sha}) and stays in the file. "
        "Revise the report with ```!edit N``` and send it again with ```!submit```, or "
        "cancel with ```!cancel```."
    ),
    "decision.no_delegate": (
        "No delegate is configured for **{municipality}**, so the decision could not be "
        "sent. {title} is decided under the delegation order, not by a politician. The "
        "report is open again. The duty leads have been told."
    ),
    "decision.no_delegate_leads": (
        "Case **{number}** could not be sent: no delegate is configured for {municipality}. "
        "Add the delegates to the configuration (```[[municipalities.delegates]]```), "
        "restart Socialjour and ask the worker to type ```!submit``` again."
    ),
    "record.sealed": (
        "**The record in {number} is sealed** as your record ({title}). It is above "
        "(SHA-256 {sha}) and stays in the file. No signature is needed: this is the "
        "worker's record, not a decision. Next: hand over to the home municipality with "
        "```!handover```."
    ),
    "record.no_seal": (
        "The record could not be sealed: no seal key is configured. The report is open "
        "again. Ask the administrator to add the seal, then type ```!submit``` again."
    ),
    "record.failed": (
        "The record could not be made or sealed, so nothing was saved. The report is as "
        "it was. Try ```!submit``` again; if it happens again, contact the duty lead."
    ),
    "oncall.override.not_asked": (
        "**Note:** {user} is first on call for {municipality} from {starts} to {ends}, but "
        "**will not be asked for committee decisions**: {why} Only the chair or a member "
        "the committee has appointed may decide when the committee's decision cannot be "
        "awaited (LVU section 6 second paragraph, LVM section 13). Record the appointment "
        "in the configuration and restart Socialjour, or put someone else on call."
    ),
    "oncall.override.partly": (
        "**Note:** {user} is first on call for {municipality} from {starts} to {ends}, but "
        "the appointment holds only until {until} inclusive: after that {user} is not "
        "asked for committee decisions (LVU section 6 second paragraph, LVM section 13)."
    ),
    "oncall.override.partly_later": (
        "**Note:** {user} is first on call for {municipality} from {starts} to {ends}, but "
        "the appointment holds only from {since}: before that {user} is not asked for "
        "committee decisions (LVU section 6 second paragraph, LVM section 13)."
    ),
    "oncall.override.why.none": "no appointment is recorded in the configuration.",
    "oncall.override.why.ended": "the appointment ran out on {until}.",
    "oncall.override.why.later": "the appointment holds only from {since}.",
    "audit.action.record.sealed": "sealed the record (SHA-256 {sha256})",
}

SIGNER_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
