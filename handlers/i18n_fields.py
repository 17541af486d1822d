"""What the bot says about answers to form questions, in Swedish and English.

Merged into ``handlers.i18n``'s catalogues. Refusals say what was wrong and show a
right answer; hints (``field.hint.<type>``) follow each question and take no
parameters. Markers as in ``handlers.i18n``: ``**bold**`` and ```code```.
"""

from __future__ import annotations

__all__ = ["FIELD_MESSAGES"]

_SV: dict[str, str] = {
    # refusals
    "field.empty": "Svaret var tomt. Skriv ditt svar och skicka igen.",
    "field.too_long": (
        "Svaret är för långt: {length} tecken, men högst {max} får plats. "
        "Korta ner det och skicka igen."
    ),
    "field.choice.unknown": (
        "Det svaret känner jag inte igen. Svara med en siffra 1–{count} "
        "eller med texten för ett av alternativen."
    ),
    "field.choice.number": "Det finns inget alternativ {number}. Svara med en siffra 1–{count}.",
    "field.choice.ambiguous": (
        "Svaret passar flera alternativ: {matches}. Skriv mer av texten eller svara med siffran."
    ),
    "field.choice.one": "Välj bara ett alternativ här: svara med en siffra 1–{count}.",
    "field.multi.unknown": (
        "Jag känner inte igen ”{part}”. Svara med siffror 1–{count} eller alternativens text, "
        "åtskilda med kommatecken, t.ex. ```1, 3```."
    ),
    "field.yes_no.invalid": (
        "Svara ```ja``` eller ```nej``` (eller ```1``` för ja, ```2``` för nej)."
    ),
    "field.date.invalid": (
        "Jag förstår inte datumet. Skriv t.ex. ```2026-11-24```, ```24/11``` eller ```idag```."
    ),
    "field.date.nonexistent": "Datumet {date} finns inte. Kontrollera dag och månad.",
    "field.datetime.invalid": (
        "Jag förstår inte tidpunkten. Skriv t.ex. ```2026-11-24 03:15```, bara ```03:15``` "
        "för i dag, eller ```nu```."
    ),
    "field.datetime.gap": (
        "Klockslaget {time} fanns inte den dagen: klockan ställdes fram till sommartid. "
        "Skriv tiden en timme senare."
    ),
    "field.personnummer.format": (
        "Ett personnummer har 10 eller 12 siffror: ```ÅÅÅÅMMDD-NNNN``` eller ```ÅÅMMDD-NNNN```. "
        "Kontrollera numret och skicka igen."
    ),
    "field.personnummer.date": (
        "Personnumret innehåller inget riktigt datum ({date}). Kontrollera födelsedatumet."
    ),
    "field.personnummer.checksum": (
        "Kontrollsiffran stämmer inte, så någon siffra är troligen fel. "
        "Jämför med legitimationen eller folkbokföringen."
    ),
    "field.personnummer.future": (
        "Födelsedatumet {date} ligger i framtiden. Kontrollera århundradet (19 eller 20) "
        "och datumet."
    ),
    "field.phone.invalid": (
        "Jag förstår inte telefonnumret. Skriv ett svenskt nummer som ```070-123 45 67``` "
        "eller ```+46 70 123 45 67```."
    ),
    "field.municipality.unknown": (
        "Den kommunen hör inte till jouren. Svara med en siffra 1–{count} eller kommunens namn."
    ),
    "field.municipality.ambiguous": (
        "Svaret passar flera kommuner: {matches}. Skriv hela namnet eller svara med siffran."
    ),
    "field.municipality.none": (
        "Inga kommuner finns inlagda i Socialjours inställningar. Kontakta administratören."
    ),
    "field.matrix_user.invalid": (
        "Det är inget Matrix-id. Skriv det som ```@namn:example.org```; det står i personens "
        "profil i Element."
    ),
    # how answers are shown
    "field.yes_no.yes": "Ja",
    "field.yes_no.no": "Nej",
    # hints shown with a question (no parameters)
    "field.hint.text": "Svara med en kort text.",
    "field.hint.long_text": "Skriv fritt. Flera rader i samma meddelande går bra.",
    "field.hint.choice": "Svara med siffran eller texten.",
    "field.hint.multi_choice": "Svara med en eller flera siffror, t.ex. ```1, 3```.",
    "field.hint.yes_no": "Svara ```ja``` eller ```nej```.",
    "field.hint.date": "Svara med datum, t.ex. 2026-11-24 eller ”idag”.",
    "field.hint.datetime": (
        "Svara med datum och klockslag, t.ex. 2026-11-24 03:15, bara klockslaget för i dag, "
        "eller ”nu”."
    ),
    "field.hint.personnummer": "Svara med 10 eller 12 siffror, t.ex. ÅÅÅÅMMDD-NNNN.",
    "field.hint.phone": "Svara med telefonnumret, t.ex. 070-123 45 67.",
    "field.hint.municipality": "Svara med siffran eller kommunens namn.",
    "field.hint.matrix_user": "Svara med Matrix-id, t.ex. @namn:example.org.",
}

_EN: dict[str, str] = {
    # refusals
    "field.empty": "The answer was empty. Type your answer and send it again.",
    "field.too_long": (
        "The answer is too long: {length} characters, but at most {max} fit. "
        "Please shorten it and send it again."
    ),
    "field.choice.unknown": (
        "I don't recognise that answer. Answer with a number 1–{count} "
        "or with the text of one of the options."
    ),
    "field.choice.number": "There is no option {number}. Answer with a number 1–{count}.",
    "field.choice.ambiguous": (
        "The answer fits several options: {matches}. Type more of the text or answer with "
        "the number."
    ),
    "field.choice.one": "Choose only one option here: answer with a number 1–{count}.",
    "field.multi.unknown": (
        "I don't recognise “{part}”. Answer with numbers 1–{count} or the options' text, "
        "separated by commas, e.g. ```1, 3```."
    ),
    "field.yes_no.invalid": "Answer ```yes``` or ```no``` (or ```1``` for yes, ```2``` for no).",
    "field.date.invalid": (
        "I don't understand the date. Type e.g. ```2026-11-24```, ```24/11``` or ```today```."
    ),
    "field.date.nonexistent": "The date {date} does not exist. Check the day and the month.",
    "field.datetime.invalid": (
        "I don't understand the time. Type e.g. ```2026-11-24 03:15```, just ```03:15``` "
        "for today, or ```now```."
    ),
    "field.datetime.gap": (
        "The time {time} did not exist that day: clocks went forward to summer time. "
        "Type the time one hour later."
    ),
    "field.personnummer.format": (
        "A personal identity number has 10 or 12 digits: ```YYYYMMDD-NNNN``` or "
        "```YYMMDD-NNNN```. Check the number and send it again."
    ),
    "field.personnummer.date": (
        "The number does not contain a real date ({date}). Check the date of birth."
    ),
    "field.personnummer.checksum": (
        "The check digit does not match, so a digit is probably wrong. "
        "Compare with the ID document or the population register."
    ),
    "field.personnummer.future": (
        "The date of birth {date} is in the future. Check the century (19 or 20) and the date."
    ),
    "field.phone.invalid": (
        "I don't understand the phone number. Type a Swedish number like ```070-123 45 67``` "
        "or ```+46 70 123 45 67```."
    ),
    "field.municipality.unknown": (
        "That municipality is not served by this duty service. Answer with a number "
        "1–{count} or the municipality's name."
    ),
    "field.municipality.ambiguous": (
        "The answer fits several municipalities: {matches}. Type the whole name or answer "
        "with the number."
    ),
    "field.municipality.none": (
        "No municipalities are set up in Socialjour's configuration. Contact the administrator."
    ),
    "field.matrix_user.invalid": (
        "That is not a Matrix ID. Type it as ```@name:example.org```; it is shown in the "
        "person's profile in Element."
    ),
    # how answers are shown
    "field.yes_no.yes": "Yes",
    "field.yes_no.no": "No",
    # hints shown with a question (no parameters)
    "field.hint.text": "Answer with a short text.",
    "field.hint.long_text": "Write freely. Several lines in one message are fine.",
    "field.hint.choice": "Answer with the number or the text.",
    "field.hint.multi_choice": "Answer with one or more numbers, e.g. ```1, 3```.",
    "field.hint.yes_no": "Answer ```yes``` or ```no```.",
    "field.hint.date": "Answer with a date, e.g. 2026-11-24 or “today”.",
    "field.hint.datetime": (
        "Answer with a date and time, e.g. 2026-11-24 03:15, just the time for today, or “now”."
    ),
    "field.hint.personnummer": "Answer with 10 or 12 digits, e.g. YYYYMMDD-NNNN.",
    "field.hint.phone": "Answer with the phone number, e.g. 070-123 45 67.",
    "field.hint.municipality": "Answer with the number or the municipality's name.",
    "field.hint.matrix_user": "Answer with the Matrix ID, e.g. @name:example.org.",
}

FIELD_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
