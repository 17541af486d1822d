"""Reading Matrix event contents into what the domain understands, and back.

Polls follow MSC3381 as Element sends and renders them today
(``org.matrix.msc3381.poll.*``) and carry the Matrix 1.7 stable form (``m.poll``)
in the same event; votes are accepted in both forms.
"""

from __future__ import annotations

from typing import Any

from handlers.messenger import Poll

POLL_START = "org.matrix.msc3381.poll.start"
POLL_RESPONSE_TYPES = ("org.matrix.msc3381.poll.response", "m.poll.response")


def message_text(content: dict[str, Any]) -> tuple[str, str | None]:
    """(body, id of the edited event) of an ``m.room.message`` content.

    An edit's text is in ``m.new_content``; a reply's quoted fallback is removed,
    so a worker who answers by replying to the question is understood.
    """
    relates = content.get("m.relates_to") or {}
    if relates.get("rel_type") == "m.replace":
        new = content.get("m.new_content") or {}
        return str(new.get("body", "")), _str_or_none(relates.get("event_id"))
    body = str(content.get("body", ""))
    if "m.in_reply_to" in relates:
        body = strip_reply_fallback(body)
    return body, None


def reply_target(content: dict[str, Any]) -> str | None:
    """The event an ``m.room.message`` replies to (``m.in_reply_to``), if any."""
    relates = content.get("m.relates_to") or {}
    if not isinstance(relates, dict):
        return None
    target = relates.get("m.in_reply_to")
    return _str_or_none(target.get("event_id")) if isinstance(target, dict) else None


def strip_reply_fallback(body: str) -> str:
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and lines[0] == "":
        lines.pop(0)
    return "\n".join(lines)


def vote(event_type: str, content: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """(poll event id, chosen answer ids) of a poll response, or None if malformed."""
    relates = content.get("m.relates_to") or {}
    poll_id = relates.get("event_id")
    if relates.get("rel_type") != "m.reference" or not isinstance(poll_id, str):
        return None
    if event_type == "m.poll.response":
        answers = content.get("m.selections")
    else:
        answers = (content.get("org.matrix.msc3381.poll.response") or {}).get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        return None
    return poll_id, tuple(answers[:50])


def poll_content(poll: Poll) -> dict[str, Any]:
    fallback = poll.fallback()
    return {
        POLL_START: {
            "kind": "org.matrix.msc3381.poll.disclosed",
            "max_selections": poll.max_selections,
            "question": {"org.matrix.msc1767.text": poll.question, "body": poll.question},
            "answers": [
                {"id": answer_id, "org.matrix.msc1767.text": label}
                for answer_id, label in poll.options
            ],
        },
        "org.matrix.msc1767.text": fallback,
        "m.poll": {
            "kind": "m.disclosed",
            "max_selections": poll.max_selections,
            "question": {"m.text": [{"body": poll.question}]},
            "answers": [
                {"m.id": answer_id, "m.text": [{"body": label}]}
                for answer_id, label in poll.options
            ],
        },
        "m.text": [{"body": fallback}],
        "body": fallback,
    }


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
