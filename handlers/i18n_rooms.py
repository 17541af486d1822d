"""What the bot tells the duty leads about someone in a room who should not be there
(issue 10, "Unexpected members"). Merged into ``handlers.i18n``'s catalogues.

The alert names the room by its case number (or the intake room's municipality, or
the direct room's owner, a colleague) and the unexpected account by its Matrix ID,
never the person a case is about: the duty room's text may show on a phone.
"""

from __future__ import annotations

__all__ = ["ROOMS_MESSAGES"]

_SV: dict[str, str] = {
    "rooms.intruder.case": (
        "**Okänd medlem i ärenderummet {number}:** {user} är med i rummet men deltar "
        "inte i ärendet. {outcome}"
    ),
    "rooms.intruder.intake": (
        "**Okänd medlem i mottagningsrummet för {place}:** {user} finns inte bland "
        "mottagningens medlemmar i konfigurationen. {outcome}"
    ),
    "rooms.intruder.direct": (
        "**Okänd medlem i Socialjours direktrum med {owner}:** {user} hör inte hemma där. {outcome}"
    ),
    "rooms.intruder.duty": (
        "**Okänd medlem i jourrummet:** {user} finns inte bland jourens medlemmar eller "
        "arbetsledare i konfigurationen. Jourrummet visar ärendenummer men inga "
        "personuppgifter; Socialjour tar inte bort någon härifrån. Ska personen inte vara "
        "här: be Matrix-serverns administratör att ta bort kontot ur rummet. Ska den vara "
        "här: lägg till den i ```duty.members```."
    ),
    "rooms.outcome.removed": (
        "Socialjour har tagit bort kontot och skickade ingenting i rummet så länge det "
        "var med. Ta reda på med Matrix-serverns administratör hur kontot kom in."
    ),
    "rooms.outcome.stuck": (
        "Socialjour kan inte ta bort kontot (det har lika hög behörighet i rummet) och "
        "skickar ingenting i rummet förrän det är borta. Be Matrix-serverns "
        "administratör att ta bort kontot ur rummet omedelbart."
    ),
}

_EN: dict[str, str] = {
    "rooms.intruder.case": (
        "**Unknown member in case room {number}:** {user} is in the room but takes no "
        "part in the case. {outcome}"
    ),
    "rooms.intruder.intake": (
        "**Unknown member in the intake room of {place}:** {user} is not among the "
        "intake members in the configuration. {outcome}"
    ),
    "rooms.intruder.direct": (
        "**Unknown member in Socialjour's direct room with {owner}:** {user} does not "
        "belong there. {outcome}"
    ),
    "rooms.intruder.duty": (
        "**Unknown member in the duty room:** {user} is not among the duty members or "
        "leads in the configuration. The duty room shows case numbers but no personal "
        "data; Socialjour removes nobody from it. If they should not be here, ask the "
        "Matrix server's administrator to remove the account from the room; if they "
        "should, add them to ```duty.members```."
    ),
    "rooms.outcome.removed": (
        "Socialjour removed the account and sent nothing into the room while it was "
        "there. Find out with the Matrix server's administrator how it got in."
    ),
    "rooms.outcome.stuck": (
        "Socialjour cannot remove the account (it has as much power in the room) and "
        "sends nothing into the room until it is gone. Ask the Matrix server's "
        "administrator to remove the account from the room at once."
    ),
}

ROOMS_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
