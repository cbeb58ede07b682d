"""Opt-out state like Twilio's Advanced Opt-Out: keywords a recipient texts back."""

from __future__ import annotations

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})


def opt_out_type(body: str) -> str | None:
    """`STOP`, `START` or `HELP` when the whole message (any case, outer blanks
    ignored) is one of that group's keywords: the `OptOutType` Twilio adds to the
    inbound webhook."""
    word = body.strip().upper()
    if word in OPT_OUT:
        return "STOP"
    if word in OPT_IN:
        return "START"
    if word in HELP:
        return "HELP"
    return None


class OptOuts:
    """Which recipients have opted out of which sender.

    A sender is a Messaging Service (covering every number in its pool) or a lone
    number, as Twilio scopes opt-outs.
    """

    def __init__(self) -> None:
        self._blocked: set[tuple[str, str]] = set()

    def apply(self, sender: str, phone: str, body: str) -> str | None:
        """Record a recipient's reply; returns its OptOutType."""
        kind = opt_out_type(body)
        if kind == "STOP":
            self._blocked.add((sender, phone))
        elif kind == "START":
            self._blocked.discard((sender, phone))
        return kind

    def blocked(self, sender: str, phone: str) -> bool:
        return (sender, phone) in self._blocked
