"""What the bot says about deadlines (issue 9). Merged into ``handlers.i18n``'s catalogues.

Nothing here names the person a case is about: the case number, the deadline's
label and statute from the template, dates and who marked what.
"""

from __future__ import annotations

__all__ = ["DEADLINES_MESSAGES"]

_SV: dict[str, str] = {
    "deadline.weekdays": "mån tis ons tors fre lör sön",
    "deadline.outer": " (yttersta gräns {outer}, lagen (1930:173) om beräkning av lagstadgad tid)",
    "deadline.status.header": "**Frister**",
    "deadline.status.running": "• {label}: senast **{due}**{outer}",
    "deadline.status.no_meeting": ("• {label}: nästa sammanträde (datum saknas i konfigurationen)"),
    "deadline.status.waiting": "• {label}: startar {when}",
    "deadline.status.done": "• {label}: klart ✓ ({when}, {who})",
    "deadline.status.void": "• {label}: startar inte eller gäller inte längre (rätten upphävde)",
    "deadline.status.court": "Rättens beslut {day}: {outcome}",
    "deadline.trigger.decision": "när beslutet undertecknas",
    "deadline.trigger.execution": "när beslutet har verkställts (```!verkställt```)",
    "deadline.trigger.court_decision": (
        "när rätten har beslutat att omhändertagandet består (```!rättens beslut```)"
    ),
    "court.outcome.upheld": "fastställt (omhändertagandet består)",
    "court.outcome.revoked": "upphävt (omhändertagandet består inte)",
    "deadline.started": (
        "Frist i **{number}**: {label} – senast **{due}**{outer}. "
        "Markera med ```!{act} {number}``` när det är gjort."
    ),
    "deadline.started_no_meeting": (
        "Frist i **{number}**: {label} – vid nämndens nästa sammanträde (datum saknas i "
        "konfigurationen). Markera med ```!{act} {number}``` när det är gjort."
    ),
    "deadline.remind": (
        "Påminnelse: **{number}** – {label}, senast **{due}**{outer}. "
        "Markera med ```!{act} {number}``` när det är gjort."
    ),
    "deadline.missed": (
        "**Frist passerad: {number}** – {label}: sista dagen var {due} och ingen har "
        "markerat att det är gjort. Yttersta gräns enligt lagen (1930:173): **{outer_day}**; "
        "gör det nu om det inte är gjort. Missas den: {lost} "
        "Markera med ```!{act} {number}``` när det är gjort."
    ),
    "deadline.missed_final": (
        "**Frist passerad: {number}** – {label}: sista dagen var {due} och ingen har "
        "markerat att det är gjort. {lost} "
        "Är det gjort: markera med ```!{act} {number}```."
    ),
    "deadline.no_meeting": (
        "**{number}**: {label} ska anmälas vid nämndens nästa sammanträde, men inget "
        "sammanträde för {municipality} finns i konfigurationen. Lägg in datumen "
        "(```meetings``` eller ```meetings_ics```); sedan påminns fristen som vanligt."
    ),
    "deadline.done": "✓ **{number}**: {label} – klart, markerat av {user}.",
    "deadline.already_done": (
        "**{number}**: {label} är redan markerat som klart ({when}, {user})."
    ),
    "deadline.no_such_act": (
        "Ärende **{number}** har ingen öppen frist som markeras med ```!{act}```."
    ),
    "deadline.which_case": (
        "Vilket ärende? Skriv numret efter kommandot, t.ex. ```!{act} {example}```. "
        "Öppna frister för ```!{act}``` här: {numbers}."
    ),
    "deadline.nothing_open": (
        "Det finns ingen öppen frist som markeras med ```!{act}``` i den här kommunens "
        "ärenden. Skriv ärendenumret efter kommandot, t.ex. ```!{act} SJ-2026-0042```."
    ),
    "deadline.unknown_case": (
        "Det finns inget ärende **{number}** för den här kommunen. Kontrollera numret; "
        "det skrivs som ```SJ-2026-0042```."
    ),
    "court.usage": (
        "Skriv ```!rättens beslut ÅÅÅÅ-MM-DD fastställt``` eller "
        "```!rättens beslut ÅÅÅÅ-MM-DD upphävt``` (datumet kan också vara ```idag``` "
        "eller ```igår```). I mottagningsrummet: lägg till ärendenumret, t.ex. "
        "```!rättens beslut idag fastställt SJ-2026-0042```."
    ),
    "court.bad_date": (
        "Datumet ```{value}``` känns inte igen. Skriv det som ÅÅÅÅ-MM-DD, t.ex. "
        "```2026-03-05```, eller ```idag```."
    ),
    "court.future": "Rättens beslut kan inte vara fattat {day}: den dagen har inte kommit än.",
    "court.before_decision": (
        "Rättens beslut kan inte vara fattat {day}, före beslutet om omhändertagande ({decided})."
    ),
    "court.no_deadlines": "Ärende **{number}** har inga frister som rättens beslut påverkar.",
    "court.already": (
        "Rättens beslut i **{number}** är redan registrerat: {day}, {outcome} ({user}). "
        "Blev det fel: kontakta en jourchef."
    ),
    "court.recorded": "Rättens beslut {day} i **{number}**: **{outcome}**. Registrerat av {user}.",
    "court.submitted": "Rätten har fått beslutet, så det här är klart ✓: {labels}.",
    "court.started": "Ny frist: {label} – senast **{due}**{outer}.",
    "court.started_no_meeting": "Ny frist: {label} – nästa sammanträde (datum saknas).",
    "court.stopped": (
        "Rätten upphävde omhändertagandet, så de här fristerna startar inte eller gäller "
        "inte längre: {labels}."
    ),
}

_EN: dict[str, str] = {
    "deadline.weekdays": "Mon Tue Wed Thu Fri Sat Sun",
    "deadline.outer": " (outer limit {outer}, Act (1930:173) on the computation of statutory time)",
    "deadline.status.header": "**Deadlines**",
    "deadline.status.running": "• {label}: by **{due}**{outer}",
    "deadline.status.no_meeting": (
        "• {label}: next committee meeting (date missing in the configuration)"
    ),
    "deadline.status.waiting": "• {label}: starts {when}",
    "deadline.status.done": "• {label}: done ✓ ({when}, {who})",
    "deadline.status.void": "• {label}: does not start or no longer applies (the court revoked)",
    "deadline.status.court": "The court's decision {day}: {outcome}",
    "deadline.trigger.decision": "when the decision is signed",
    "deadline.trigger.execution": "when the decision has been carried out (```!executed```)",
    "deadline.trigger.court_decision": (
        "when the court has decided that the custody continues (```!court```)"
    ),
    "court.outcome.upheld": "upheld (the custody continues)",
    "court.outcome.revoked": "revoked (the custody does not continue)",
    "deadline.started": (
        "Deadline in **{number}**: {label} – by **{due}**{outer}. "
        "Mark it with ```!{act} {number}``` once done."
    ),
    "deadline.started_no_meeting": (
        "Deadline in **{number}**: {label} – at the committee's next meeting (date missing "
        "in the configuration). Mark it with ```!{act} {number}``` once done."
    ),
    "deadline.remind": (
        "Reminder: **{number}** – {label} must be done by **{due}**{outer}. "
        "Mark it with ```!{act} {number}``` once done."
    ),
    "deadline.missed": (
        "**Deadline passed: {number}** – {label}: the last day was {due} and nobody has "
        "marked it done. Outer limit under Act (1930:173): **{outer_day}**; do it now if it "
        "is not done. If that is missed: {lost} Mark it with ```!{act} {number}``` once done."
    ),
    "deadline.missed_final": (
        "**Deadline passed: {number}** – {label}: the last day was {due} and nobody has "
        "marked it done. {lost} If it is done: mark it with ```!{act} {number}```."
    ),
    "deadline.no_meeting": (
        "**{number}**: {label} is to be reported at the committee's next meeting, but no "
        "meeting of {municipality} is in the configuration. Add the dates (```meetings``` "
        "or ```meetings_ics```); the deadline is then reminded as usual."
    ),
    "deadline.done": "✓ **{number}**: {label} – done, marked by {user}.",
    "deadline.already_done": "**{number}**: {label} is already marked done ({when}, {user}).",
    "deadline.no_such_act": "Case **{number}** has no open deadline marked with ```!{act}```.",
    "deadline.which_case": (
        "Which case? Write its number after the command, e.g. ```!{act} {example}```. "
        "Open deadlines for ```!{act}``` here: {numbers}."
    ),
    "deadline.nothing_open": (
        "No case of this municipality has an open deadline marked with ```!{act}```. "
        "Write the case number after the command, e.g. ```!{act} SJ-2026-0042```."
    ),
    "deadline.unknown_case": (
        "There is no case **{number}** for this municipality. Check the number; it is "
        "written like ```SJ-2026-0042```."
    ),
    "court.usage": (
        "Write ```!court YYYY-MM-DD upheld``` or ```!court YYYY-MM-DD revoked``` (the date "
        "can also be ```today``` or ```yesterday```). In the intake room add the case "
        "number, e.g. ```!court today upheld SJ-2026-0042```."
    ),
    "court.bad_date": (
        "The date ```{value}``` is not understood. Write it as YYYY-MM-DD, e.g. "
        "```2026-03-05```, or ```today```."
    ),
    "court.future": "The court cannot have decided on {day}: that day has not come yet.",
    "court.before_decision": (
        "The court cannot have decided on {day}, before the custody decision ({decided})."
    ),
    "court.no_deadlines": "Case **{number}** has no deadlines the court's decision affects.",
    "court.already": (
        "The court's decision in **{number}** is already recorded: {day}, {outcome} ({user}). "
        "If that is wrong: contact a duty lead."
    ),
    "court.recorded": (
        "The court's decision of {day} in **{number}**: **{outcome}**. Recorded by {user}."
    ),
    "court.submitted": "The court has the decision, so this is done ✓: {labels}.",
    "court.started": "New deadline: {label} – by **{due}**{outer}.",
    "court.started_no_meeting": "New deadline: {label} – next committee meeting (date missing).",
    "court.stopped": (
        "The court revoked the custody, so these deadlines do not start or no longer "
        "apply: {labels}."
    ),
}

DEADLINES_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
