"""What the bot says while a decision waits: reminders, escalation, acknowledgement.

Merged into ``handlers.i18n``'s catalogues. Nothing here names the person a case
is about: only case numbers, decision-makers' names and times.
"""

from __future__ import annotations

__all__ = ["ESCALATION_MESSAGES"]

_SV: dict[str, str] = {
    "escalation.reminder": (
        "**Påminnelse: ett brådskande beslut väntar på din underskrift**\n"
        "Ärende **{number}** – {decision_type}.\n"
        "Läs och underteckna här: {link}\n"
        "Länken gäller till {expires}. Svara ```!tittar``` eller reagera med ✅ "
        "så vet jouren att du är på väg."
    ),
    "escalation.reminded": "Påminnelse skickad till **{names}** kl. {time}.",
    "escalation.next_signer": (
        "Ingen har undertecknat ännu. Nu tillfrågas även **{name}** ({role}) med en egen "
        "länk. Den som beslutar först gäller; de andra länkarna stängs då."
    ),
    "escalation.no_next_signer": (
        "**Ingen fler beslutsfattare att fråga** för ärende {number}. Jourens samordnare: "
        "ring beslutsfattaren eller lägg in jour med ```!jour ersätt```."
    ),
    "escalation.leads": (
        "**Beslutet i {number} är fortfarande inte undertecknat.** Det har väntat sedan "
        "{since}. Tillfrågade: {asked}. Jourens samordnare: ring beslutsfattaren."
    ),
    "escalation.undeliverable": (
        "**{name}s telefon kan inte läsa krypterade meddelanden från Socialjour.** "
        "Verifiera sessionen i Element (Inställningar → Säkerhet), eller ring. "
        "Larmet går nu vidare."
    ),
    "escalation.undeliverable_reminder": (
        "Påminnelsen till **{name}** kom inte fram: telefonen kan inte läsa krypterade "
        "meddelanden från Socialjour. Verifiera sessionen i Element (Inställningar → "
        "Säkerhet), eller ring."
    ),
    "escalation.expired": (
        "Länken till **{name}** gick ut utan underskrift. En ny länk skickas nu."
    ),
    "escalation.repaired": (
        "Ärendet väntade utan en giltig underskriftslänk. En ny länk har skickats till **{name}**."
    ),
    "escalation.late": (
        "Steget som skulle ha körts kl. {due} körs nu, {late} sent (Socialjour var inte igång)."
    ),
    "escalation.late_delayed": "Steget som skulle ha körts kl. {due} körs nu, {late} sent.",
    "escalation.acknowledged": (
        "**{name}** har sett larmet ({via}) och är på väg. Nästa påminnelse tidigast {until}."
    ),
    "escalation.channel_failed": (
        "**Larmet via {channel} till {name} gick inte fram** och försöks inte igen. "
        "Ring beslutsfattaren."
    ),
    "escalation.channel.sms": "sms",
    "escalation.channel.call": "telefonsamtal",
    "escalation.channel.email": "e-post",
    "escalation.via.matrix": "svarade i Element",
    "escalation.via.reaction": "reagerade med ✅",
    "escalation.via.call": "tryckte 1 i samtalet",
    "escalation.via.page": "öppnade underskriftssidan",
    "escalation.ack_done": "Tack – jouren ser att du är på väg. Påminnelserna pausas en stund.",
    "escalation.ack_nothing": "Det finns inget beslut som väntar på dig just nu.",
    "escalation.remind_done": "Larmet skickades igen till {count} beslutsfattare.",
    "escalation.resent": "Nya länkar skickades till **{names}**. De gamla länkarna är stängda.",
    "escalation.not_waiting": "Inget beslut väntar på underskrift i det här ärendet.",
    "escalation.render_failed": (
        "Beslutsdokumentet kunde inte skapas, så inget skickades. Rapporten är kvar som den "
        "var. Försök igen med ```!skicka```; händer det igen, kontakta jourens samordnare."
    ),
    "escalation.nobody_on_call_leads": (
        "**Ingen beslutsjour för {municipality}** – beslutet i {number} kunde inte skickas. "
        "Lägg in jour med ```!jour ersätt```."
    ),
    "escalation.status.asked": "Tillfrågad: **{name}** ({role}) kl. {time} – {state}",
    "escalation.status.delivered": "larmet har kommit fram",
    "escalation.status.not_delivered": "larmet har inte kommit fram",
    "escalation.status.acked": "har sett larmet kl. {time}",
    "escalation.status.expired": "länken har gått ut",
    "escalation.status.next": "Nästa steg: {action} kl. {time}",
    "escalation.action.remind": "påminnelse",
    "escalation.action.next_signer": "nästa beslutsfattare tillfrågas",
    "escalation.action.alert_leads": "jourens samordnare larmas",
    "escalation.action.repeat": "samordnarna larmas och påminnelse skickas",
    "escalation.action.expire": "en ny länk när den gamla gått ut",
    "escalation.step_failed": (
        "**Ett steg i larmkedjan för {number} kunde inte utföras** ({action}). "
        "Jourens samordnare: ring beslutsfattaren."
    ),
    "help.direct": (
        "**Kommandon här**\n"
        "```!tittar``` – bekräfta att du har sett ett larm och är på väg\n"
        "```!hjälp``` – den här listan"
    ),
}

_EN: dict[str, str] = {
    "escalation.reminder": (
        "**Reminder: an urgent decision is waiting for your signature**\n"
        "Case **{number}** – {decision_type}.\n"
        "Read and sign here: {link}\n"
        "The link is valid until {expires}. Reply ```!ack``` or react with ✅ "
        "so the duty service knows you are on it."
    ),
    "escalation.reminded": "Reminder sent to **{names}** at {time}.",
    "escalation.next_signer": (
        "Nobody has signed yet. **{name}** ({role}) is now asked too, with a link of their "
        "own. Whoever decides first decides; the other links then close."
    ),
    "escalation.no_next_signer": (
        "**No further decision-maker to ask** for case {number}. Duty leads: call the "
        "decision-maker or set the roster with ```!oncall replace```."
    ),
    "escalation.leads": (
        "**The decision in {number} is still unsigned.** It has waited since {since}. "
        "Asked: {asked}. Duty leads: call the decision-maker."
    ),
    "escalation.undeliverable": (
        "**{name}'s phone can't read encrypted messages from Socialjour.** Verify the "
        "session in Element (Settings → Security), or call. The alert moves on now."
    ),
    "escalation.undeliverable_reminder": (
        "The reminder to **{name}** did not arrive: the phone can't read encrypted messages "
        "from Socialjour. Verify the session in Element (Settings → Security), or call."
    ),
    "escalation.expired": "The link to **{name}** expired unsigned. A new link is sent now.",
    "escalation.repaired": (
        "The case was waiting without a valid signing link. A new link has been sent to **{name}**."
    ),
    "escalation.late": (
        "The step due at {due} runs now, {late} late (Socialjour was not running)."
    ),
    "escalation.late_delayed": "The step due at {due} runs now, {late} late.",
    "escalation.acknowledged": (
        "**{name}** has seen the alert ({via}) and is on it. Next reminder {until} at the earliest."
    ),
    "escalation.channel_failed": (
        "**The {channel} alert to {name} did not get through** and is not tried again. "
        "Call the decision-maker."
    ),
    "escalation.channel.sms": "SMS",
    "escalation.channel.call": "phone call",
    "escalation.channel.email": "e-mail",
    "escalation.via.matrix": "replied in Element",
    "escalation.via.reaction": "reacted with ✅",
    "escalation.via.call": "pressed 1 in the call",
    "escalation.via.page": "opened the signing page",
    "escalation.ack_done": "Thank you – the duty service sees you are on it. Reminders pause.",
    "escalation.ack_nothing": "No decision is waiting for you right now.",
    "escalation.remind_done": "The alert was sent again to {count} decision-maker(s).",
    "escalation.resent": "New links were sent to **{names}**. The old links are closed.",
    "escalation.not_waiting": "No decision in this case is waiting for a signature.",
    "escalation.render_failed": (
        "The decision document could not be made, so nothing was sent. The report is as it "
        "was. Try ```!submit``` again; if it happens again, contact the duty lead."
    ),
    "escalation.nobody_on_call_leads": (
        "**Nobody on call for {municipality}** – the decision in {number} could not be sent. "
        "Set the roster with ```!oncall replace```."
    ),
    "escalation.status.asked": "Asked: **{name}** ({role}) at {time} – {state}",
    "escalation.status.delivered": "the alert was delivered",
    "escalation.status.not_delivered": "the alert was not delivered",
    "escalation.status.acked": "saw the alert at {time}",
    "escalation.status.expired": "the link has expired",
    "escalation.status.next": "Next step: {action} at {time}",
    "escalation.action.remind": "reminder",
    "escalation.action.next_signer": "the next decision-maker is asked",
    "escalation.action.alert_leads": "the duty leads are alerted",
    "escalation.action.repeat": "the leads are alerted and a reminder is sent",
    "escalation.action.expire": "a new link when the old one has expired",
    "escalation.step_failed": (
        "**A step of the alert chain for {number} could not be carried out** ({action}). "
        "Duty leads: call the decision-maker."
    ),
    "help.direct": (
        "**Commands here**\n"
        "```!ack``` – confirm that you have seen an alert and are on it\n"
        "```!help``` – this list"
    ),
}

ESCALATION_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
