"""What the bot says when a case closes (issue 9 §5). Merged into ``handlers.i18n``'s
catalogues.

The case room hears why it closed, that it is read-only now and when the bot deletes
its copy of the case's personal data; the intake room hears the case number only.
"""

from __future__ import annotations

__all__ = ["ARCHIVE_MESSAGES"]

_SV: dict[str, str] = {
    "archive.closed": (
        "**Ärende {number} är avslutat.** {reason}"
        "Rummet är nu skrivskyddat: ni kan läsa här men inte skriva.\n"
        "Socialjours egen kopia av ärendets personuppgifter (svar, dokument och "
        "underskriftsbevis) raderas {purge_date}. Händelseloggen, utan personuppgifter, "
        "sparas."
    ),
    "archive.reason.received": (
        "Hemkommunen har kvitterat överlämningen och inga frister återstår. "
    ),
    "archive.intake": "Ärende {number} är avslutat hos Socialjour; inga frister återstår.",
}

_EN: dict[str, str] = {
    "archive.closed": (
        "**Case {number} is closed.** {reason}"
        "The room is read-only now: you can read here but no longer write.\n"
        "Socialjour's own copy of the case's personal data (answers, documents and "
        "signing evidence) is deleted on {purge_date}. The event log, without personal "
        "data, is kept."
    ),
    "archive.reason.received": (
        "The home municipality has acknowledged the handover and no deadline is left. "
    ),
    "archive.intake": "Case {number} is closed at Socialjour; no deadline is left.",
}

ARCHIVE_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
