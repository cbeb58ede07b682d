"""What one message is, as the store keys it: `DeliveryKey` (incident, version, person,
medium, purpose, and which of the person's phones an SMS goes to), with its id
`incident:version:person:medium[@phone][-purpose]`. models.py re-exports it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

NoticeKind = Literal["reminder", "supervisor", "role_assigned", "role_reminder", "role_escalation"]


class Medium(StrEnum):
    sms = "sms"
    email = "email"
    dingtalk = "dingtalk"
    wecom = "wecom"


class DeliveryKey(BaseModel):
    """What one message is: to whom, about which incident and version, by which medium,
    for which purpose. `purpose` is "" for the script version itself; a notice about the
    version has its own ("reminder", "supervisor", "role-leader-assigned"...), so it
    never dedupes the script away. Its id, `incident:version:person:medium[-purpose]`,
    is the stored key and is unchanged; an SMS to a person's second phone (or third...)
    is a message of its own, `...:sms@2[-purpose]`, so it never dedupes against the
    first phone's and is itself sent once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    incident_id: str
    version: int
    """The script version; 0 for a notice about the incident itself (a role notice)."""
    person_id: str
    medium: Medium
    purpose: str = ""
    phone: int = Field(default=0, ge=0)
    """SMS: which of the person's phones (`Person.numbers`): 0 the first (main) one."""

    @model_validator(mode="before")
    @classmethod
    def _from_channel(cls, data: Any) -> Any:
        # Documents stored before medium and purpose were fields carry "<medium>[-<purpose>]".
        if isinstance(data, dict) and "channel" in data and "medium" not in data:
            data = dict(data)
            medium, _, purpose = str(data.pop("channel")).partition("-")
            medium, _, phone = medium.partition("@")
            data.update(medium=medium, purpose=purpose, phone=int(phone) - 1 if phone.isdigit() else 0)
        return data

    @model_serializer(mode="wrap")
    def _main_phone_unsaid(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A key of the first phone (every key of old) is stored as it always was.
        out = handler(self)
        if isinstance(out, dict) and not self.phone:
            out.pop("phone", None)
        return out

    @property
    def channel(self) -> str:
        """The medium, then the purpose if it is a notice (whichever phone an SMS went to)."""
        return f"{self.medium.value}-{self.purpose}" if self.purpose else self.medium.value

    @property
    def is_script(self) -> bool:
        return not self.purpose

    @property
    def notice(self) -> NoticeKind | None:
        """What kind of notice the purpose names (see Notifier): "reminder[-<step>]",
        "supervisor", "role-<role>-assigned", "role-<role>-reminder",
        "role-<role>-level<N>"; None for the script itself or a purpose of no kind."""
        purpose = self.purpose
        if purpose.startswith("role-"):
            last = purpose.rsplit("-", 1)[-1]
            if last == "assigned":
                return "role_assigned"
            return "role_reminder" if last == "reminder" else "role_escalation" if last.startswith("level") else None
        head = purpose.split("-", 1)[0]
        return "reminder" if head == "reminder" else "supervisor" if head == "supervisor" else None

    @property
    def role(self) -> str | None:
        """The role a role notice is about."""
        if not self.purpose.startswith("role-"):
            return None
        return self.purpose.removeprefix("role-").rsplit("-", 1)[0]

    def as_id(self) -> str:
        medium = f"{self.medium.value}@{self.phone + 1}" if self.phone else self.medium.value
        last = f"{medium}-{self.purpose}" if self.purpose else medium
        return f"{self.incident_id}:{self.version}:{self.person_id}:{last}"

    @classmethod
    def parse(cls, delivery_id: str) -> "DeliveryKey | None":
        """The key `as_id` made, or None for anything else."""
        parts = delivery_id.split(":")
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        medium, _, phone = parts[3].partition("-")[0].partition("@")
        if medium not in Medium.__members__ or not (phone == "" or (phone.isdigit() and int(phone) > 1)):
            return None
        return cls(incident_id=parts[0], version=int(parts[1]), person_id=parts[2], channel=parts[3])
