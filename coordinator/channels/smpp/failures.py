"""What a failed SMPP request means for a delivery, as the SendError the outbox acts on.

Pure. A refusal means the SMSC did not take the message, so the send may be tried
again when the cause is passing (throttling, a busy or failing SMSC); an invalid
destination is this recipient's problem (fall back to email); anything else about
the request (source address, esm_class, data coding, a vendor code we cannot read) is
the same for every recipient, so neither.

A submit_sm written and then unanswered is in doubt: never sent again, since SMPP has
no idempotency key and the SMSC may have it. docs/smpp.md says why it is not retryable.
"""

from __future__ import annotations

from coordinator.errors import (
    SendError,
    SmppBindFailed,
    SmppInDoubt,
    SmppNotSent,
    SmppRefused,
)

from .pdu import Status

RETRYABLE = frozenset({
    Status.ESME_RSYSERR,  # the SMSC's own trouble
    Status.ESME_RMSGQFUL,  # throttled past throttle_attempts
    Status.ESME_RTHROTTLED,
    Status.ESME_RSUBMITFAIL,
    Status.ESME_RX_T_APPN,  # "temporary application error"
    Status.ESME_RINVBNDSTS,  # the SMSC lost our bind; the session binds again
    Status.ESME_RUNKNOWNERR,
})
PERMANENT: dict[int, str] = {
    Status.ESME_RINVDSTADR: "the destination number is invalid",
}
# A bind refused for these is the configuration; other refusals (ESME_RBINDFAIL: too
# many sessions, the SMSC restarting) may pass.
BIND_CONFIG = frozenset({Status.ESME_RINVPASWD, Status.ESME_RINVSYSID, Status.ESME_RINVSYSTYP})


def status_code(status: int) -> str:
    """The SendError code for a command_status: its name, or smpp-0x... for a code SMPP 3.4 leaves to vendors."""
    try:
        return Status(status).name
    except ValueError:
        return f"smpp-{status:#x}"


def send_error(delivery_id: str, exc: Exception, *, idempotent: bool = False) -> SendError:
    """The SendError for what the session raised. `idempotent`: the request was a
    query, which is safe to repeat, so one left unanswered is just worth retrying."""
    if isinstance(exc, SmppNotSent):
        return SendError(delivery_id, "connection", f"nothing was sent: {exc}", retryable=True)
    if isinstance(exc, SmppInDoubt):
        if idempotent:
            return SendError(delivery_id, "timeout", f"no answer from the SMSC: {exc}", retryable=True)
        return SendError(
            delivery_id, "in-doubt",
            f"{exc}; the SMSC may have taken the message, and SMPP offers no way to find out, so it is not sent again",
            retryable=False,
        )
    if isinstance(exc, SmppBindFailed):
        if exc.status in BIND_CONFIG:
            return SendError(delivery_id, status_code(exc.status), f"{exc}: check system_id, password and system_type",
                             retryable=False)
        return SendError(delivery_id, status_code(exc.status), str(exc), retryable=True)
    if isinstance(exc, SmppRefused):
        code = status_code(exc.status)
        what = f"the SMSC answered {'a generic_nack' if exc.nack else 'an error'} ({code})"
        if exc.status in RETRYABLE:
            return SendError(delivery_id, code, f"{what}; retry later", retryable=True)
        if exc.status in PERMANENT:
            return SendError(delivery_id, code, f"{what}: {PERMANENT[exc.status]}", retryable=False, permanent=True)
        return SendError(delivery_id, code, f"{what}; the request is wrong for this SMSC, whoever it goes to",
                         retryable=False)
    raise TypeError(f"not an SMPP session failure: {exc!r}")
