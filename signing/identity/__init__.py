"""Identification of the decision-maker before signing: one interface, several methods."""

from signing.identity.base import (
    Done,
    Failed,
    Identity,
    IdentityProvider,
    Pending,
    SigningContext,
    Started,
)

__all__ = [
    "Done",
    "Failed",
    "Identity",
    "IdentityProvider",
    "Pending",
    "SigningContext",
    "Started",
]
