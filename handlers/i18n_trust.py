"""What the bot says about sessions it cannot trust (issue 10, "The rooms"). Merged
into ``handlers.i18n``'s catalogues.

A person writing from a session the bot does not trust cannot read what the bot
would answer (it is encrypted for trusted sessions only), so these go to the
people who can act: the duty leads and, in a case room, the other participants.
``{name}`` is the person's display name, ``{user}`` their Matrix id.
"""

from __future__ import annotations

__all__ = ["TRUST_MESSAGES"]

_SV: dict[str, str] = {
    "trust.untrusted.no_cross_signing": (
        "**{name}** ({user}) skrev från en session som inte är verifierad: kontot saknar "
        "korssignering. Socialjour läser inte meddelandet och kan inte svara. Be {name} att "
        "verifiera sessionen i Element: Inställningar → Säkerhet (ställ in säker "
        "säkerhetskopiering och verifiera sessionen)."
    ),
    "trust.untrusted.unverified_session": (
        "**{name}** ({user}) skrev från en session som inte är verifierad. Socialjour läser "
        "inte meddelandet och kan inte svara. Be {name} att verifiera sessionen i Element: "
        "Inställningar → Säkerhet (eller logga ut den okända sessionen)."
    ),
    "trust.untrusted.identity_changed": (
        "**{name}** ({user}) skrev, men personens krypteringsidentitet har ändrats och är "
        "inte bekräftad. Socialjour läser inte meddelandet och kan inte svara. En "
        "administratör jämför den nya identitetens fingeravtryck med {name} (per telefon "
        "eller på plats) och kör ```socialjour trust accept {user} --fingerprint …```."
    ),
    "trust.status.header": "**Sessioner som Socialjour inte kan lita på ({count})**",
    "trust.status.no_cross_signing": (
        "• {name} ({user}) – ingen korssignering: verifiera sessionen i Element "
        "(Inställningar → Säkerhet)"
    ),
    "trust.status.unverified_session": (
        "• {name} ({user}) – {count} av {total} sessioner är inte verifierade: verifiera dem "
        "i Element (Inställningar → Säkerhet) eller logga ut dem"
    ),
    "trust.status.identity_changed": (
        "• {name} ({user}) – ny krypteringsidentitet som inte är bekräftad: "
        "```socialjour trust accept {user} --fingerprint …```"
    ),
    "trust.status.no_sessions": (
        "• {name} ({user}) – ingen krypterad session: logga in i Element och verifiera sessionen"
    ),
    "trust.status.unknown": "Socialjour kunde inte kontrollera medlemmarnas sessioner just nu.",
}

_EN: dict[str, str] = {
    "trust.untrusted.no_cross_signing": (
        "**{name}** ({user}) wrote from a session that is not verified: the account has no "
        "cross-signing. Socialjour does not read the message and cannot answer. Ask {name} to "
        "verify the session in Element: Settings → Security (set up secure backup and verify "
        "the session)."
    ),
    "trust.untrusted.unverified_session": (
        "**{name}** ({user}) wrote from a session that is not verified. Socialjour does not "
        "read the message and cannot answer. Ask {name} to verify the session in Element: "
        "Settings → Security (or sign the unknown session out)."
    ),
    "trust.untrusted.identity_changed": (
        "**{name}** ({user}) wrote, but their encryption identity has changed and is not "
        "confirmed. Socialjour does not read the message and cannot answer. An administrator "
        "compares the new identity's fingerprint with {name} (by phone or in person) and runs "
        "```socialjour trust accept {user} --fingerprint …```."
    ),
    "trust.status.header": "**Sessions Socialjour cannot trust ({count})**",
    "trust.status.no_cross_signing": (
        "• {name} ({user}) – no cross-signing: verify the session in Element (Settings → Security)"
    ),
    "trust.status.unverified_session": (
        "• {name} ({user}) – {count} of {total} sessions not verified: verify them in Element "
        "(Settings → Security) or sign them out"
    ),
    "trust.status.identity_changed": (
        "• {name} ({user}) – new encryption identity not confirmed: "
        "```socialjour trust accept {user} --fingerprint …```"
    ),
    "trust.status.no_sessions": (
        "• {name} ({user}) – no encrypted session: log in to Element and verify the session"
    ),
    "trust.status.unknown": "Socialjour could not check the members' sessions just now.",
}

TRUST_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
