"""What an SMS reply acknowledges, decided from the messages that phone was sent.

A reply acknowledges exactly one thing: a role notice (the role) or a message of a
version (that version: a script, an update, a stand-down, or a reminder of one), never
something the phone was not sent, and never across incidents without the incident's
code. Every SMS carries its incident's short code ("〔事件码K7Q〕"):

    "1" / "确认" / "收到"        the incident of the newest message the phone got; in it, the
                                newest message whose role or version is not acknowledged yet
    "1 K7Q" / "确认K7Q"         the same within incident K7Q (a person with several open
                                incidents, a drill beside a real one, picks which)

The answer SMS names what was acknowledged and what is still waiting, so nobody has to
guess where their "1" went. Pure functions; acknowledgements.py reads the store and acts.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

from .models import Delivery, Incident, ScriptKind

# Letters and digits that cannot be mistaken for one another (no I, O, 0, 1).
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 3
ACK_WORDS = ("确认收到", "确认", "收到", "1", "OK")
# The provider's own opt-out keywords (whole message, any case).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
_ACK = re.compile(
    rf"^(?:{'|'.join(ACK_WORDS)})\s*(?P<code>[{CODE_ALPHABET}]{{{CODE_LENGTH}}})?$"
    rf"|^(?P<first>[{CODE_ALPHABET}]{{{CODE_LENGTH}}})\s*(?:{'|'.join(ACK_WORDS)})$"
)
_TRAILING = ".。!！,，~～ "
# Messages read when matching a reply: a person gets a handful per incident.
RECENT_MESSAGES = 30

KIND_LABELS = {ScriptKind.script: "口径", ScriptKind.update: "进展通报", ScriptKind.stand_down: "解除通知"}


def new_code(taken: set[str], rng: random.Random | None = None) -> str:
    """A code no open incident uses (32,768 of them: collisions are only possible when
    two instances open incidents in the same instant)."""
    pick = rng or random.SystemRandom()
    for _ in range(1000):
        code = "".join(pick.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code
    raise RuntimeError("no free incident code")  # 32,768 open incidents


def code_mark(code: str) -> str:
    return f"〔事件码{code}〕"


def with_code(sms: str, code: str) -> str:
    """The SMS with its incident's code at the end, unless the template placed it."""
    if not code or f"事件码{code}" in sms:
        return sms
    return sms + code_mark(code)


@dataclass(frozen=True)
class Reply:
    kind: Literal["ack", "stop", "start", "other"]
    code: str | None = None


def parse_reply(body: str) -> Reply:
    """Full-width characters, case and trailing punctuation do not matter."""
    text = unicodedata.normalize("NFKC", body).strip().rstrip(_TRAILING).upper()
    if text in STOP_WORDS:
        return Reply("stop")
    if text in START_WORDS:
        return Reply("start")
    match = _ACK.match(text)
    if match is None:
        return Reply("other")
    return Reply("ack", match.group("code") or match.group("first"))


@dataclass(frozen=True)
class Target:
    """One thing to acknowledge: a role, or a version."""

    incident_id: str
    role: str | None = None
    version: int | None = None

    @property
    def tag(self) -> str:
        return f"role-{self.role}" if self.role is not None else f"v{self.version}"


@dataclass(frozen=True)
class Decision:
    target: Target | None
    """None: nothing to acknowledge (see `unknown_code`)."""
    incident: Incident | None
    pending_here: int = 0
    """Still waiting in the same incident after this one."""
    elsewhere: list[Incident] = field(default_factory=list)
    """Other incidents of this person with something waiting (reply with their code)."""
    unknown_code: str | None = None
    """The reply named a code none of the person's incidents has."""


def ackable(delivery: Delivery) -> Target | None:
    """What a reply to this message would acknowledge (None for a supervisor's notice or
    an answer): a role notice its role, a version's message or reminder its version."""
    key = delivery.key
    if key.is_script or key.purpose.startswith("reminder"):
        return Target(key.incident_id, version=key.version) if key.version > 0 else None
    if key.role is not None:
        return Target(key.incident_id, role=key.role)
    return None


def waiting(incident: Incident, person_id: str, sent: Sequence[Delivery], acked: set[int]) -> list[Target]:
    """What the person could still acknowledge in `incident`, from the messages it sent
    them (newest first): roles they hold unacknowledged, and the newest version they got
    unless acknowledged. Newest message first."""
    out: list[Target] = []
    seen_version = False
    for delivery in sent:
        target = ackable(delivery)
        if target is None or target.incident_id != incident.id or target in out:
            continue
        if target.role is not None:
            role = incident.role(target.role)
            holds = role is not None and person_id in role.chain[: role.level + 1] and role.acked_at is None
            if holds and incident.is_open:
                out.append(target)
        elif not seen_version:
            seen_version = True  # older versions are superseded for this person
            if target.version not in acked:
                out.append(target)
    return out


def decide(
    person_id: str,
    reply: Reply,
    sent: Sequence[Delivery],
    incidents: dict[str, Incident],
    acked: dict[str, set[int]],
) -> Decision:
    """The one thing a reply acknowledges. `sent`: the SMS the phone got, newest first;
    `incidents`: those of them not closed; `acked`: per incident, the versions the person
    acknowledged."""
    order = list(dict.fromkeys(d.key.incident_id for d in sent if ackable(d) and d.key.incident_id in incidents))
    pending = {i: waiting(incidents[i], person_id, sent, acked.get(i, set())) for i in order}
    if reply.code is not None:
        chosen = next((i for i in order if incidents[i].code == reply.code), None)
        if chosen is None:
            return Decision(None, incidents[order[0]] if order else None, unknown_code=reply.code,
                            elsewhere=[incidents[i] for i in order if pending[i]])
    elif order:
        chosen = order[0]
    else:
        return Decision(None, None)
    todo = pending[chosen]
    others = [incidents[i] for i in order if i != chosen and pending[i]]
    if not todo:
        return Decision(None, incidents[chosen], elsewhere=others)
    return Decision(todo[0], incidents[chosen], pending_here=len(todo) - 1, elsewhere=others)


def answer_text(decision: Decision, place: Callable[[Incident], str]) -> str | None:
    """The SMS that tells the person what their reply did; None when there is nothing to
    say (a repeated "1" with everything acknowledged). `place`: how the incident's
    region reads."""
    incident = decision.incident
    if incident is None:
        return None
    drill = "【演练】" if incident.drill else ""
    others = "、".join(f"“1 {i.code}”（{i.title}）" for i in decision.elsewhere[:3])
    if decision.unknown_code is not None:
        if not others:
            return None
        return f"{drill}未找到事件码{decision.unknown_code}。您待确认的事件请回复{others}"
    target = decision.target
    if target is None:
        return None
    if target.role is not None:
        role = incident.role(target.role)
        what = f"{role.title if role else target.role}角色"
    else:
        script = incident.script(target.version or 0)
        what = f"{KIND_LABELS.get(script.kind, '口径') if script else '口径'}v{target.version}"
    text = f"{drill}已确认：{incident.title}（{place(incident)}，事件码{incident.code}）{what}。"
    if decision.pending_here:
        text += f"本事件尚有{decision.pending_here}项待确认，请再回复1。"
    if others:
        text += f"其他事件待确认，请回复{others}。"
    return text
