"""Delivery receipts, table-driven: the text form and the TLVs (which win), the stat
words as DeliveryStatus, a message's status from its parts', forward-only moves, and
what a failed SMPP request means for the delivery (SendError)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from coordinator.channels.smpp.bodies import ESM_RECEIPT, ShortMessage
from coordinator.channels.smpp.failures import send_error
from coordinator.channels.smpp.pdu import Status, Tag
from coordinator.channels.smpp.receipts import (
    Receipt,
    advance,
    message_status,
    parse_receipt,
    parse_receipt_text,
    status_of_state,
)
from coordinator.channels.smpp.sent import DeliveryReport, SentMessages
from coordinator.errors import SmppBindFailed, SmppInDoubt, SmppNotSent, SmppRefused
from coordinator.models import DeliveryStatus as S

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
TEXT = "id:0A1B2C3D sub:001 dlvrd:001 submit date:2611241000 done date:2611241001 stat:DELIVRD err:000 text:【演练】网络故障"


def _receipt(text: str, tlvs: dict[int, bytes] | None = None) -> ShortMessage:
    return ShortMessage("8613800000001", "1065712345", text.encode(), esm_class=ESM_RECEIPT, tlvs=tlvs or {})


def test_text_fields() -> None:
    assert parse_receipt_text(TEXT) == {
        "id": "0A1B2C3D", "sub": "001", "dlvrd": "001", "submit date": "2611241000", "done date": "2611241001",
        "stat": "DELIVRD", "err": "000", "text": "【演练】网络故障",
    }


@pytest.mark.parametrize(("text", "tlvs", "expected"), [
    (TEXT, {}, Receipt("0A1B2C3D", "DELIVRD", "000", datetime(2026, 11, 24, 10, 0), datetime(2026, 11, 24, 10, 1),
                       "【演练】网络故障")),
    # Upper-case names, seconds in the dates, a text with colons and "stat:" in it.
    ("ID:77 SUB:001 DLVRD:000 SUBMIT DATE:261124100059 DONE DATE:261124100105 STAT:UNDELIV ERR:005 TEXT:a stat:DELIVRD",
     {}, Receipt("77", "UNDELIV", "005", datetime(2026, 11, 24, 10, 0, 59), datetime(2026, 11, 24, 10, 1, 5),
                 "a stat:DELIVRD")),
    # Lower-case stat, fields missing, a date that is no date.
    ("id:abc stat:expired submit date:garbage", {}, Receipt("abc", "EXPIRED")),
    # The TLVs win: the id in another base, the state from message_state.
    (TEXT, {Tag.receipted_message_id: b"abcdef01\0", Tag.message_state: b"\x05"},
     Receipt("abcdef01", "UNDELIV", "000", datetime(2026, 11, 24, 10, 0), datetime(2026, 11, 24, 10, 1), "【演练】网络故障")),
    # TLVs only, no text; the id without its NUL; network_error_code.
    ("", {Tag.receipted_message_id: b"m-9", Tag.message_state: b"\x08", Tag.network_error_code: b"\x03\x00\x0b"},
     Receipt("m-9", "REJECTD", "3-011")),
    ("id:42 stat:WHATEVER", {}, Receipt("42", "WHATEVER")),
    ("id:42", {Tag.message_state: b"\x07"}, Receipt("42", "UNKNOWN")),
    ("id:42 err:000", {}, Receipt("42", "UNKNOWN", "000")),
])
def test_parse_receipt(text: str, tlvs: dict[int, bytes], expected: Receipt) -> None:
    assert parse_receipt(_receipt(text, tlvs), text) == expected


def test_a_receipt_without_an_id_is_refused() -> None:
    with pytest.raises(ValueError, match="without a message id"):
        parse_receipt(_receipt("stat:DELIVRD"), "stat:DELIVRD")


@pytest.mark.parametrize(("stat", "status"), [
    ("DELIVRD", S.delivered), ("EXPIRED", S.undelivered), ("DELETED", S.undelivered), ("UNDELIV", S.undelivered),
    ("REJECTD", S.failed), ("ACCEPTD", S.sent), ("ENROUTE", S.sent), ("UNKNOWN", None), ("WHATEVER", None),
])
def test_stat_as_status(stat: str, status: S | None) -> None:
    assert Receipt("1", stat).status == status


@pytest.mark.parametrize(("receipt", "code"), [
    (Receipt("1", "DELIVRD", "000"), None),
    (Receipt("1", "ENROUTE", ""), None),
    (Receipt("1", "UNDELIV", "001"), "UNDELIV:001"),
    (Receipt("1", "UNDELIV", "000"), "UNDELIV"),
    (Receipt("1", "REJECTD", "3-011"), "REJECTD:3-011"),
])
def test_error_code(receipt: Receipt, code: str | None) -> None:
    assert receipt.error_code == code


@pytest.mark.parametrize(("state", "status"), [(1, S.sent), (2, S.delivered), (3, S.undelivered), (5, S.undelivered),
                                               (6, S.sent), (7, None), (8, S.failed), (99, None)])
def test_query_state(state: int, status: S | None) -> None:
    assert status_of_state(state) == status


@pytest.mark.parametrize(("current", "new", "result"), [
    (S.queued, S.sent, S.sent),
    (S.sent, S.delivered, S.delivered),
    (S.delivered, S.sent, S.delivered),  # a late ENROUTE
    (S.delivered, S.undelivered, S.delivered),  # final stays final
    (S.undelivered, S.delivered, S.undelivered),
    (S.sent, None, S.sent),  # UNKNOWN says nothing
])
def test_advance(current: S, new: S | None, result: S) -> None:
    assert advance(current, new) == result


@pytest.mark.parametrize(("parts", "status"), [
    ([S.delivered], S.delivered),
    ([S.delivered, S.delivered, S.delivered], S.delivered),
    ([S.delivered, None, S.delivered], S.sent),
    ([S.delivered, S.sent], S.sent),
    ([S.delivered, S.undelivered], S.undelivered),
    ([None, S.undelivered], S.undelivered),  # no need to wait: the script is incomplete already
    ([S.undelivered, S.failed], S.failed),
    ([None], S.sent),
])
def test_message_status(parts: list[S | None], status: S) -> None:
    assert message_status(parts) == status


def test_message_status_needs_parts() -> None:
    with pytest.raises(ValueError):
        message_status([])


def test_a_message_is_delivered_when_its_last_part_is() -> None:
    sent = SentMessages(keep_for=timedelta(days=1))
    provider_id, early = sent.add("i1:1:p1:sms", ["a", "b", "c"], T0)
    assert (provider_id, early) == ("a,b,c", [])
    assert sent.receipt(Receipt("a", "DELIVRD"), T0) == []
    assert sent.receipt(Receipt("b", "ENROUTE"), T0) == []
    assert sent.receipt(Receipt("b", "DELIVRD"), T0) == []
    assert sent.receipt(Receipt("c", "DELIVRD"), T0) == [DeliveryReport("a,b,c", S.delivered, None, "i1:1:p1:sms")]
    assert sent.receipt(Receipt("c", "DELIVRD"), T0) == []  # a repeated receipt is not news
    assert sent.receipt(Receipt("a", "UNDELIV", "001"), T0) == []  # and nothing moves back


def test_one_part_lost_makes_the_message_undelivered_at_once() -> None:
    sent = SentMessages(keep_for=timedelta(days=1))
    sent.add("d", ["a", "b"], T0)
    assert sent.receipt(Receipt("b", "EXPIRED", "001"), T0) == [
        DeliveryReport("a,b", S.undelivered, "EXPIRED:001", "d")]
    assert sent.receipt(Receipt("a", "REJECTD"), T0) == []  # final already: no second word on it
    assert sent.receipt(Receipt("a", "DELIVRD"), T0) == []
    assert sent.get("a,b").status == S.undelivered  # type: ignore[union-attr]


def test_a_receipt_before_its_send_finished_waits_for_it() -> None:
    sent = SentMessages(keep_for=timedelta(days=1))
    assert sent.receipt(Receipt("a", "DELIVRD"), T0) == []
    assert sent.add("d", ["a"], T0) == ("a", [DeliveryReport("a", S.delivered, None, "d")])
    assert sent.sent_for("d") is not None and sent.sent_for("d").status == S.delivered  # type: ignore[union-attr]


def test_a_receipt_for_a_message_sent_before_a_restart_is_reported_under_its_own_id() -> None:
    sent = SentMessages(keep_for=timedelta(days=1))
    assert sent.receipt(Receipt("old", "UNDELIV", "002"), T0) == []
    assert sent.receipt(Receipt("older", "UNKNOWN"), T0) == []
    assert sent.expire(T0 + timedelta(minutes=1)) == []
    assert sent.expire(T0 + timedelta(minutes=6)) == [DeliveryReport("old", S.undelivered, "UNDELIV:002", None)]


def test_old_messages_are_forgotten() -> None:
    sent = SentMessages(keep_for=timedelta(hours=1))
    sent.add("d", ["a"], T0)
    sent.expire(T0 + timedelta(hours=2))
    assert sent.get("a") is None and sent.sent_for("d") is None


@pytest.mark.parametrize(("exc", "code", "retryable", "permanent"), [
    (SmppNotSent("closed"), "connection", True, False),
    (SmppInDoubt("no response"), "in-doubt", False, False),
    (SmppBindFailed(Status.ESME_RINVPASWD), "ESME_RINVPASWD", False, False),
    (SmppBindFailed(Status.ESME_RINVSYSID), "ESME_RINVSYSID", False, False),
    (SmppBindFailed(Status.ESME_RBINDFAIL), "ESME_RBINDFAIL", True, False),
    (SmppRefused(Status.ESME_RTHROTTLED, nack=False), "ESME_RTHROTTLED", True, False),
    (SmppRefused(Status.ESME_RMSGQFUL, nack=False), "ESME_RMSGQFUL", True, False),
    (SmppRefused(Status.ESME_RSYSERR, nack=True), "ESME_RSYSERR", True, False),
    (SmppRefused(Status.ESME_RINVDSTADR, nack=False), "ESME_RINVDSTADR", False, True),
    (SmppRefused(Status.ESME_RINVSRCADR, nack=False), "ESME_RINVSRCADR", False, False),
    (SmppRefused(Status.ESME_RINVCMDLEN, nack=True), "ESME_RINVCMDLEN", False, False),
    (SmppRefused(0x401, nack=False), "smpp-0x401", False, False),
])
def test_send_error(exc: Exception, code: str, retryable: bool, permanent: bool) -> None:
    error = send_error("i1:1:p1:sms", exc)
    assert (error.code, error.retryable, error.permanent) == (code, retryable, permanent)
    assert error.delivery_id == "i1:1:p1:sms"


def test_an_unanswered_query_is_worth_retrying() -> None:
    error = send_error("d", SmppInDoubt("no response"), idempotent=True)
    assert (error.code, error.retryable) == ("timeout", True)
