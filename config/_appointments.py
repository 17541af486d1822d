"""Who may decide: a decision-maker's role, title and appointment (förordnande).

LVU 6 § andra stycket (lag 1990:52) and LVM 13 § (lag 1988:870): when the
committee's decision cannot be awaited, the decision may be made by the chair
(ordförande) or by another member the committee has appointed (förordnad
ledamot); the decision is reported at the committee's next meeting. So the
power comes from the chair's election or the committee's appointment, never
from a title: "vice ordförande" is a label. (JO 956-2008 examined how a
committee names the members who may decide under 6 § andra stycket LVU; its
conclusion is not encoded here.) Every decision-maker therefore carries the
appointment the decision document prints, and one without a valid appointment
is never asked. What the file may say but should change is a warning, never a problem:
an appointment runs out while the bot runs, and one lapsed person must not stop
the bot for every other municipality.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from config._reader import Reader, key_place
from config.settings import (
    LEGACY_ROLES,
    ROLES,
    Appointment,
    DecisionMaker,
    Municipality,
    Role,
)

__all__ = ["APPOINTMENT_KEYS", "check_appointments", "read_appointment", "read_role"]

APPOINTMENT_KEYS = ("appointed_by", "appointed_on", "minutes_ref", "valid_until")
#: An appointment that runs out within this many days is worth a warning.
EXPIRY_NOTICE = timedelta(days=30)
_STATUTE = "LVU 6 § andra stycket, LVM 13 §"


def read_role(r: Reader, table: dict[str, Any], place: str) -> Role:
    """``ordförande`` or ``förordnad ledamot``; the old values with a warning."""
    at = key_place(place, "role")
    if "role" not in table:
        r.report(at, "missing required key")
        return "förordnad ledamot"
    value = r.string(at, table["role"])
    if value is None:
        return "förordnad ledamot"
    for role in ROLES:
        if value == role:
            return role
    if value == "vice ordförande":
        r.warn(
            at,
            f'"vice ordförande" is a title, not a power to decide ({_STATUTE}); write '
            f"{LEGACY_ROLES[value]}, with the committee's appointment",
        )
        return "vice ordförande"
    if value == "ledamot":
        r.warn(
            at,
            f'"ledamot" decides only as a member the committee has appointed ({_STATUTE}); '
            f"write {LEGACY_ROLES[value]}, with the appointment",
        )
        return "ledamot"
    listed = ", ".join(repr(role) for role in ROLES)
    r.report(at, f"expected one of {listed}, got {r.shown(at, value)}")
    return "förordnad ledamot"


def read_appointment(
    r: Reader, table: dict[str, Any], place: str, *, name: str
) -> Appointment | None:
    """The four appointment keys together, or none of them (a warning: never asked)."""
    given = [key for key in APPOINTMENT_KEYS if key in table]
    if not given:
        r.warn(
            place,
            f"no appointment recorded: {name or 'this person'} will not be asked to decide "
            f"until appointed_by, appointed_on, minutes_ref and valid_until say who "
            f"appointed them, when, in which § of the minutes, and until when ({_STATUTE})",
        )
        return None
    for key in APPOINTMENT_KEYS:
        if key not in given:
            r.report(
                key_place(place, key),
                "missing required key: an appointment is appointed_by, appointed_on, "
                "minutes_ref and valid_until together",
            )
    appointed_by = r.optional(table, place, "appointed_by")
    minutes_ref = r.optional(table, place, "minutes_ref")
    appointed_on = r.day(table, place, "appointed_on")
    valid_until = r.day(table, place, "valid_until")
    if appointed_on is None or valid_until is None or not appointed_by or not minutes_ref:
        return None
    if valid_until < appointed_on:
        r.report(
            key_place(place, "valid_until"),
            f"the appointment ends ({valid_until}) before it was made ({appointed_on})",
        )
        return None
    appointment = Appointment(appointed_by, appointed_on, minutes_ref, valid_until)
    _warn_when(r, appointment, place, name or "this person")
    return appointment


def _warn_when(r: Reader, appointment: Appointment, place: str, name: str) -> None:
    """Say when the appointment does not hold today, or soon stops holding."""
    today = r.today
    if appointment.valid_until < today:
        r.warn(
            key_place(place, "valid_until"),
            f"the appointment ran out on {appointment.valid_until}: {name} will not be asked "
            "to decide; record the new appointment",
        )
    elif appointment.appointed_on > today:
        r.warn(
            key_place(place, "appointed_on"),
            f"the appointment holds from {appointment.appointed_on}: {name} will not be "
            "asked to decide before then",
        )
    elif appointment.valid_until - today < EXPIRY_NOTICE:
        days = (appointment.valid_until - today).days
        r.warn(
            key_place(place, "valid_until"),
            f"the appointment runs out on {appointment.valid_until} (in {days} day"
            f"{'' if days == 1 else 's'}): record the renewed appointment in time",
        )


def check_appointments(r: Reader, municipality: Municipality, place: str) -> None:
    """Warnings about a municipality's decision-makers as a group.

    An appointed member must be appointed by the committee itself (the statutes say
    "som nämnden har förordnat"); and somebody must be able to decide today.
    """
    body = municipality.body
    makers: Sequence[DecisionMaker] = municipality.decision_makers
    for index, maker in enumerate(makers):
        appointment = maker.appointment
        if appointment is None or maker.mandate != "förordnad ledamot":
            continue
        if appointment.appointed_by.casefold() != body.casefold():
            r.warn(
                key_place(f"{place}.decision_makers[{index}]", "appointed_by"),
                f"an appointed member must be appointed by the deciding body itself "
                f"({_STATUTE}): appointed_by says {appointment.appointed_by!r}, the body is "
                f"{body!r} (set body_name if that is its name)",
            )
    if makers and not any(maker.may_decide_on(r.today) for maker in makers):
        r.warn(
            key_place(place, "decision_makers"),
            f"nobody in {municipality.name or municipality.id} can be asked to decide today "
            f"({r.today}): no decision-maker has an appointment that holds",
        )
