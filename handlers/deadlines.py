"""The legal deadline clocks of a case (issue 9 §3).

The interface other parts call; filled in by the deadline work:

- :func:`start_clocks` in the transaction that records what starts them (the
  signature, the execution, the court's decision);
- :func:`open_deadlines` to know whether a case still has a clock running (a case
  closes only when none does).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

Trigger = Literal["decision", "execution", "court_decision"]


async def start_clocks(
    session: AsyncSession, *, case_id: int, trigger: Trigger, at: datetime, now: datetime
) -> None:
    """Start the case's deadlines that ``trigger`` (happening ``at``) starts, in the
    caller's transaction. Idempotent: a clock already started is left alone."""


async def open_deadlines(session: AsyncSession, *, case_id: int) -> list[Any]:
    """The case's deadlines not yet marked done."""
    return []
