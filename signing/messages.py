"""What the signing page and API say, in Swedish and English."""

from __future__ import annotations

from collections.abc import Mapping

WEB_MESSAGES: dict[str, dict[str, str]] = {
    "sv": {
        "error.bad_request": "Begäran kunde inte förstås.",
        "error.not_found": "Sidan finns inte.",
        "error.link_unknown": "Länken är ogiltig. Kontrollera att hela länken kom med, eller be jouren om en ny.",
        "error.link_expired": "Länken har gått ut. Be jouren skicka en ny.",
        "error.case_cancelled": "Ärendet har avbrutits av jouren. Inget beslut behövs.",
        "error.link_replaced": "Den här länken har ersatts av en ny. Använd den senaste länken i Element.",
        "error.already_decided": "Beslutet är redan fattat. Inget mer behöver göras här.",
        "error.already_signed_by": "Beslutet är redan undertecknat av {name}. Inget mer behöver göras här.",
        "error.already_declined_by": "Beslutet är redan avslaget av {name}. Inget mer behöver göras här.",
        "error.unknown_method": "Det identifieringssättet används inte här.",
        "error.auth_not_started": "Börja med att välja hur du vill identifiera dig.",
        "error.too_many_attempts": "För många försök. Be jouren skicka en ny länk.",
        "error.slow_down": (
            "För många försök från din anslutning på kort tid. "
            "Vänta {minutes} minuter och försök sedan igen."
        ),
        "error.document_changed": (
            "Beslutsdokumentet har ändrats sedan det skickades till dig, så det undertecknas "
            "inte. Kontakta jouren."
        ),
        "error.not_identified": "Identifiera dig först.",
        "error.wrong_person": "Du är inte den beslutsfattare som länken gäller.",
        "error.wrong_browser": (
            "Identifieringen påbörjades i en annan webbläsare. Slutför den på den enhet och i "
            "den webbläsare där du började, eller börja om här."
        ),
        "error.oidc_login_unknown": (
            "Inloggningen är redan använd eller har gått ut. Börja om från länken i Element."
        ),
        "error.reason_required": "Skriv en motivering när du avslår.",
        "error.unknown_action": "Okänd åtgärd.",
        "error.no_seal": "Underskrift är inte konfigurerad i den här installationen. Kontakta IT.",
        "error.cross_site": "Begäran kom inte från signeringssidan.",
        "error.internal": "Något gick fel. Försök igen om en stund.",
        "auth.wrong_code": "Fel kod. Kontrollera siffrorna och försök igen.",
        "auth.code_expired": "Koden har gått ut. Begär en ny kod.",
        "auth.code_not_sent": "Koden kunde inte skickas i Element just nu. Försök igen om en stund.",
        # The alt text of each page image of the decision on the signing page.
        "preview.page_alt": "Sida {page} av {count} av beslutet",
        # LVU 6 § andra stycket, LVM 13 §: only the chair or an appointed member decides.
        "error.no_mandate": (
            "Ditt förordnande gäller inte i dag, så du kan inte fatta beslutet. Kontakta jouren."
        ),
    },
    "en": {
        "error.bad_request": "The request could not be understood.",
        "error.not_found": "There is no such page.",
        "error.link_unknown": "The link is not valid. Check that the whole link came through, or ask the duty service for a new one.",
        "error.link_expired": "The link has expired. Ask the duty service to send a new one.",
        "error.case_cancelled": "The duty service has cancelled the case. No decision is needed.",
        "error.link_replaced": "This link has been replaced by a new one. Use the latest link in Element.",
        "error.already_decided": "The decision has already been made. Nothing more is needed here.",
        "error.already_signed_by": "The decision has already been signed by {name}. Nothing more is needed here.",
        "error.already_declined_by": "The decision has already been declined by {name}. Nothing more is needed here.",
        "error.unknown_method": "That identification method is not used here.",
        "error.auth_not_started": "First choose how to identify yourself.",
        "error.too_many_attempts": "Too many attempts. Ask the duty service for a new link.",
        "error.slow_down": (
            "Too many attempts from your connection in a short time. "
            "Please wait {minutes} minutes and then try again."
        ),
        "error.document_changed": (
            "The decision document has changed since it was sent to you, so it will not be "
            "signed. Contact the duty service."
        ),
        "error.not_identified": "Identify yourself first.",
        "error.wrong_person": "You are not the decision-maker this link is for.",
        "error.wrong_browser": (
            "Identification was started in another browser. Finish it on the device and in "
            "the browser where you began, or start again here."
        ),
        "error.oidc_login_unknown": (
            "This sign-in has already been used or has expired. Start again from the link in "
            "Element."
        ),
        "error.reason_required": "Give a reason when you decline.",
        "error.unknown_action": "Unknown action.",
        "error.no_seal": "Signing is not configured in this installation. Contact IT.",
        "error.cross_site": "The request did not come from the signing page.",
        "error.internal": "Something went wrong. Try again in a moment.",
        "auth.wrong_code": "Wrong code. Check the digits and try again.",
        "auth.code_expired": "The code has expired. Ask for a new one.",
        "auth.code_not_sent": "The code could not be sent in Element just now. Try again in a moment.",
        "preview.page_alt": "Page {page} of {count} of the decision",
        "error.no_mandate": (
            "Your appointment does not hold today, so you cannot make this decision. "
            "Contact the duty service."
        ),
    },
}


def _catalogues() -> list[Mapping[str, Mapping[str, str]]]:
    from signing.identity.bankid import BANKID_MESSAGES
    from signing.identity.oidc import OIDC_MESSAGES

    return [WEB_MESSAGES, BANKID_MESSAGES, OIDC_MESSAGES]


def message(lang: str, key: str, **params: object) -> str:
    """The text for ``key`` in ``lang`` (Swedish if missing), from every catalogue."""
    for catalogue in _catalogues():
        text = catalogue.get(lang, {}).get(key) or catalogue.get("sv", {}).get(key)
        if text:
            try:
                return text.format(**params) if params else text
            except (KeyError, IndexError, ValueError):
                return text
    return key
