"""What the bot says about deadlines (issue 9). Merged into ``handlers.i18n``'s catalogues.

Nothing here names the person a case is about.
"""

from __future__ import annotations

__all__ = ["DEADLINES_MESSAGES"]

_SV: dict[str, str] = {}

_EN: dict[str, str] = {}

DEADLINES_MESSAGES: dict[str, dict[str, str]] = {"sv": _SV, "en": _EN}
