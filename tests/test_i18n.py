"""What the bot says: complete in both languages, safe to show as HTML, no stray markers."""

from __future__ import annotations

import html
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers import i18n
from handlers.case_state import CaseStatus

SV = i18n.CATALOGUES["sv"]
EN = i18n.CATALOGUES["en"]
ALL_KEYS = sorted(set(SV) | set(EN))
LANGS = ("sv", "en")
_FORMATTER = string.Formatter()
#: The only tags `render` may produce from a template.
_OWN_TAGS = re.compile(r"</?strong>|</?code>|<br>")


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in _FORMATTER.parse(template) if field is not None}


def dummy_params(key: str, value: str = "X") -> dict[str, str]:
    return dict.fromkeys(placeholders(SV[key]), value)


def test_both_languages_have_exactly_the_same_keys() -> None:
    assert set(SV) - set(EN) == set(), "keys missing in English"
    assert set(EN) - set(SV) == set(), "keys missing in Swedish"


@pytest.mark.parametrize("key", ALL_KEYS)
def test_every_key_has_the_same_placeholders_in_both_languages(key: str) -> None:
    assert key in SV and key in EN
    assert placeholders(SV[key]) == placeholders(EN[key])


@pytest.mark.parametrize("key", ALL_KEYS)
def test_placeholders_are_plain_names(key: str) -> None:
    """No positional `{}` or `{0}`, no attribute access: params are passed by keyword only."""
    for lang in LANGS:
        for field in placeholders(i18n.CATALOGUES[lang][key]):
            assert field.isidentifier(), (lang, key, field)


@pytest.mark.parametrize("status", list(CaseStatus), ids=str)
def test_every_status_has_a_label_and_a_next_step_in_both_languages(status: CaseStatus) -> None:
    for lang in LANGS:
        assert i18n.text(lang, f"status.{status.value}")
        assert i18n.text(lang, f"case.next.{status.value}")


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("key", ALL_KEYS)
def test_no_markers_survive_in_the_plain_text(lang: str, key: str) -> None:
    message = i18n.render(lang, key, **dummy_params(key))
    assert "**" not in message.text
    assert "```" not in message.text
    assert "**" not in (message.html or "")
    assert "```" not in (message.html or "")
    assert "{" not in message.text and "}" not in message.text
    assert message.text == i18n.text(lang, key, **dummy_params(key))


def test_bold_and_code_markers_become_strong_and_code() -> None:
    message = i18n.render("sv", "cancel.confirm", number="SJ-2026-0001", minutes=5)
    assert message.html is not None
    assert "<strong>SJ-2026-0001</strong>" in message.html
    assert "<code>!avbryt ja</code>" in message.html
    assert "SJ-2026-0001" in message.text and "!avbryt ja" in message.text
    assert "<strong>" not in message.text and "<code>" not in message.text


def test_newlines_become_line_breaks_in_html_only() -> None:
    message = i18n.render("en", "help.duty")
    assert message.html is not None
    assert "\n" in message.text
    assert "\n" not in message.html
    assert message.html.count("<br>") == message.text.count("\n")
    assert message.html.startswith("<strong>Commands in the duty room</strong><br>")


def test_a_script_tag_in_a_parameter_is_escaped_in_html_and_raw_in_text() -> None:
    evil = '<script>alert("x")</script>'
    message = i18n.render("sv", "case.created", number=evil)
    assert message.html is not None
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in message.html
    assert evil in message.text
    # The template's own markup still works around the escaped value.
    assert "<strong>&lt;script&gt;" in message.html


def test_markers_in_a_parameter_are_not_turned_into_markup() -> None:
    message = i18n.render("sv", "error.unknown_command", command="**fet** ```kod```")
    assert message.html is not None
    assert "<strong>fet</strong>" not in message.html
    assert message.html.count("<code>") == 2  # the template's two, not the parameter's


def test_a_parameter_with_braces_is_not_formatted_again() -> None:
    message = i18n.render("en", "cancel.done", number="{number}", user="@x:{y}")
    assert "Case {number} was cancelled by @x:{y}." in message.text


@given(value=st.text())
def test_no_parameter_can_inject_markup(value: str) -> None:
    message = i18n.render("sv", "cancel.done", number=value, user=value)
    assert message.html is not None
    without_own_tags = _OWN_TAGS.sub("", message.html)
    assert "<" not in without_own_tags
    assert html.escape(value, quote=True) in message.html
    assert value in message.text


def test_render_carries_reply_mentions_and_notice() -> None:
    message = i18n.render(
        "sv",
        "case.welcome",
        number="SJ-2026-0007",
        reply_to="$event",
        mentions=("@anna:example.org",),
        notice=False,
    )
    assert message.reply_to == "$event"
    assert message.mentions == ("@anna:example.org",)
    assert message.notice is False
    assert "SJ-2026-0007" in message.text


def test_an_unknown_language_falls_back_to_swedish() -> None:
    assert i18n.text("fi", "status.drafting") == i18n.text("sv", "status.drafting") == "utkast"


def test_join_puts_lines_in_one_message() -> None:
    lines = [
        i18n.render("sv", "duty.status.header", count=2),
        i18n.render("sv", "duty.status.line", number="<b>", status="utkast", created="x"),
    ]
    joined = i18n.join(lines, reply_to="$e")
    assert joined.text == "Öppna ärenden (2)\n• <b> – utkast – öppnat x"
    assert joined.html == (
        "<strong>Öppna ärenden (2)</strong><br>• <strong>&lt;b&gt;</strong> – utkast – öppnat x"
    )
    assert joined.reply_to == "$e"
