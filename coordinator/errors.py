"""The project's errors, all CoordinatorErrors. Each carries the ids it is about;
`retryable` says whether trying again later can help (a provider's 429 or a timeout) or
not (an invalid number).

Those that began as ValueErrors stay ValueErrors, for the `except ValueError` (and
pydantic validators) that may be relying on it; StalledClient stays a
ConnectionResetError so that "the page went away" covers it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .config.yamlsource import Problem


class CoordinatorError(Exception):
    retryable = False


# Configuration: the files, the environment, what a request asks of a playbook.


class ConfigError(CoordinatorError):
    """The config files have problems; `problems` lists each as `path:line: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the config:\n" + "\n".join(problems))


class UnusualYaml(CoordinatorError):
    """YAML the fast event reader leaves to yaml's own composer (anchors, tags, complex
    keys); caught inside yamlsource, never seen outside it."""


class UsersFileError(CoordinatorError, ValueError):
    """The users file cannot be used; `problems` are `path:line: message`."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class SettingsError(CoordinatorError, ValueError):
    """An environment variable has a value the service cannot use."""


class TemplateOutside(CoordinatorError):
    """A template name that would be read from outside templates/ (`..`, an absolute
    path, a symlink leading out): never read, whatever the file holds."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"template {name!r} is outside templates/")


class TemplateInvalid(CoordinatorError):
    """A template that does not compile; names the file and the line."""

    def __init__(self, name: str, line: int, message: str) -> None:
        self.name, self.line, self.message = name, line, message
        super().__init__(f"{name}:{line}: {message}")


class ParamsInvalid(CoordinatorError, ValueError):
    """Script parameters given for a playbook that it does not take, or missing ones."""

    def __init__(self, playbook_id: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"parameters for playbook {playbook_id}: " + "; ".join(problems))


# Input: complaint bodies, replay files, detection CSVs.


class BodyError(CoordinatorError, ValueError):
    """The body as a whole cannot be read (not JSON, wrong shape, too many items)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class TrailingData(BodyError):
    """A JSON document followed by more: perhaps NDJSON sent as application/json."""


class JsonNumberRefused(CoordinatorError, ValueError):
    """NaN, Infinity or an overflowing number in JSON; read_json turns it into a BodyError."""


class ReplayError(CoordinatorError, ValueError):
    """The file cannot be replayed; the message names the line."""


class DetectInputError(CoordinatorError, ValueError):
    """Bad input: names the file, the line and what is wrong (CLI exit 2)."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


# Storage.


class StoreError(CoordinatorError):
    retryable = True


class Conflict(StoreError):
    """A save based on a stale copy: read again, apply again."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} changed meanwhile")


# Incidents and what is done to them.


class IncidentNotFound(CoordinatorError):
    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident with id {incident_id!r}")


class PlaybookNotFound(CoordinatorError):
    def __init__(self, playbook_id: str) -> None:
        self.playbook_id = playbook_id
        super().__init__(f"no playbook with id {playbook_id!r}")


class InvalidAction(CoordinatorError, ValueError):
    """The action does not fit the incident's state (resolving a closed incident...), or
    the playbook cannot open one (a template refused or gone since the config check)."""


class AckTokenInvalid(CoordinatorError, ValueError):
    """A link that acknowledges nothing. `reason` says why, for the page: malformed,
    forged, expired, or unfounded (signed, but naming what we never sent); the message
    says it in English, for the log."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class ScriptError(CoordinatorError, ValueError):
    """A script action that does not fit (approving an unknown version, editing a closed
    incident)."""


class DrillNotFound(CoordinatorError, KeyError):
    def __init__(self, drill_id: str) -> None:
        super().__init__(drill_id)
        self.drill_id = drill_id

    def __str__(self) -> str:
        return f"no drill '{self.drill_id}'"


class DrillRefused(CoordinatorError, ValueError):
    """The drill cannot run on this service as configured."""


# Delivery.


class SendError(CoordinatorError):
    """A send that did not go through.

    `retryable`: trying the same send later can help (a 429, a 5xx answered before a
    message was created, a timeout after checking that nothing was created, a
    connection that failed). `permanent`: this address will not work (invalid number,
    opted out, not a mobile, a mailbox the server refuses): fall back to the other
    channel. Neither: the request itself is wrong (credentials, sender, content), so
    every recipient will fail the same way until someone fixes the configuration.
    `code` is the provider's code as text: "21610", "20429", "smtp-550", "timeout".
    """

    def __init__(self, delivery_id: str, code: str, message: str, *, retryable: bool, permanent: bool = False) -> None:
        if retryable and permanent:
            raise ValueError("a SendError is retryable or permanent, not both")
        super().__init__(f"{delivery_id}: {code}: {message}")
        self.delivery_id = delivery_id
        self.code = code
        self.message = message
        self.retryable = retryable
        self.permanent = permanent

# Messengers (DingTalk, WeCom).


class PartlySent(SendError):
    """A send of several calls stopped at one: `sent` went out, `unsent` did not. Retry
    (if `retryable`) only for `unsent`."""

    def __init__(self, cause: SendError, sent: Sequence[Any], unsent: Sequence[str]) -> None:
        message = f"{cause.message}; {len(sent)} call(s) had gone out, {len(unsent)} recipient(s) not sent"
        super().__init__(cause.delivery_id, cause.code, message, retryable=cause.retryable, permanent=cause.permanent)
        self.sent = tuple(sent)
        self.unsent = tuple(unsent)


class TokenRefused(CoordinatorError):
    """gettoken answered an errcode; `body` is its answer."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.body = body


class CallbackRefused(CoordinatorError, ValueError):
    """A callback that is not WeCom's, or not for us. `reason`: "signature", "stale",
    "malformed" or "receiver" (sealed for another corpid)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

# SMPP (coordinator/channels/smpp).


class InvalidPdu(CoordinatorError, ValueError):
    """Bytes that are not the PDU they claim to be; the connection cannot be trusted
    past them (the framing may be lost), so it is dropped."""


class SmppNotSent(CoordinatorError):
    """The request was not written: the SMSC cannot have it, sending it again is safe."""


class SmppUnwritten(CoordinatorError):
    """The connection ended before the request left this process (inside the link)."""


class SmppInDoubt(CoordinatorError):
    """The request was written and no response came (the connection was lost, or the
    SMSC did not answer in time): the SMSC may or may not have taken it."""


class SmppRefused(CoordinatorError):
    """The SMSC answered the request with an error status (in its response, or a generic_nack)."""

    def __init__(self, status: int, *, nack: bool) -> None:
        from .channels.smpp.pdu import (
            status_name,  # the codec's table; imported late, it imports this module
        )

        super().__init__(f"{'generic_nack' if nack else 'refused'}: {status_name(status)}")
        self.status = status
        self.nack = nack


class SmppBindFailed(CoordinatorError):
    """The SMSC refuses our bind (credentials, system_type, too many sessions)."""

    def __init__(self, status: int) -> None:
        from .channels.smpp.pdu import status_name

        super().__init__(f"the SMSC refused the bind: {status_name(status)}")
        self.status = status


# The web layer.


class BadBearer(CoordinatorError):
    """An Authorization header that is present but names no user; no fallback to the cookie."""


class StalledClient(CoordinatorError, ConnectionResetError):
    """A client took none of a response in time and was dropped. A ConnectionResetError,
    so a handler's `except ConnectionResetError` (the page went away) covers it too."""


# The Twilio sandbox.


class ApiError(CoordinatorError):
    """A REST request the Twilio sandbox refuses, answered with Twilio's error body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


# Network alarms in (issue 21).


class PayloadInvalid(CoordinatorError, ValueError):
    """An alarm body (Alertmanager's webhook, a PagerDuty event) that does not fit its
    format: `problems` names each field at fault. Nothing of it is acted on."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# Redis high availability (issue 21).


class StoreNotApplied(StoreError):
    """A Redis command that certainly did nothing: it never reached a primary (none
    known during a failover, the connection refused) or the server refused it (a
    demoted primary, one without enough replicas, one still loading). Sending it again
    cannot apply it twice."""


class ReplicasBehind(StoreError):
    """A write the primary applied but fewer replicas than asked confirmed in time
    (WAIT): not yet safe from the primary's death, so not reported as stored."""

    def __init__(self, wanted: int, confirmed: int, timeout_ms: int) -> None:
        super().__init__(f"{confirmed} of {wanted} replicas confirmed the write within {timeout_ms} ms")
        self.wanted = wanted
        self.confirmed = confirmed
