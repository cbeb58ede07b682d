"""WeCom's callback crypto against the vectors WeCom publishes (its 加解密方案说明 page and
its Python sample), and the ways a callback is refused."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from coordinator.channels.messenger import CardClick
from coordinator.channels.wecom_crypto import (
    WeComCrypto,
    msg_signature,
    read_card_click,
)
from coordinator.errors import CallbackRefused

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendors" / "wecom"  # sources: its README
VECTORS = json.loads((FIXTURES / "crypto_vectors.json").read_text())
DOC, VERIFY, DECRYPT = VECTORS["doc_90968"], VECTORS["sample_verify_url"], VECTORS["sample_decrypt_msg"]


def crypto(vector: dict[str, str]) -> WeComCrypto:
    return WeComCrypto(vector["token"], vector["encoding_aes_key"], vector["receive_id"])


def at(timestamp: str) -> datetime:
    return datetime.fromtimestamp(int(timestamp), timezone.utc)


def query(vector: dict[str, str], **extra: str) -> dict[str, str]:
    return {"msg_signature": vector["msg_signature"], "timestamp": vector["timestamp"], "nonce": vector["nonce"],
            **extra}


def test_signatures_of_the_published_examples() -> None:
    assert msg_signature(DOC["token"], DOC["timestamp"], DOC["nonce"], DOC["encrypt"]) == DOC["msg_signature"]
    assert crypto(VERIFY).sign(VERIFY["timestamp"], VERIFY["nonce"], VERIFY["echostr"]) == VERIFY["msg_signature"]


def test_url_check_of_the_sample_answers_the_plaintext_echostr() -> None:
    echo = crypto(VERIFY).check_url(query(VERIFY, echostr=VERIFY["echostr"]), now=at(VERIFY["timestamp"]))
    assert echo == "1288432023552776189"


def test_the_sample_callback_decrypts_to_its_message() -> None:
    message = crypto(DECRYPT).open_callback(query(DECRYPT), DECRYPT["post_data"].encode(), now=at(DECRYPT["timestamp"]))
    assert message.startswith("<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName>")
    assert "<Content>你好</Content>" in message
    assert read_card_click(message) is None  # a text message, not a button press


def test_the_documented_example_decrypts_and_re_encrypts_to_the_same_bytes() -> None:
    body = (f"<xml><ToUserName><![CDATA[{DOC['receive_id']}]]></ToUserName><Encrypt><![CDATA[{DOC['encrypt']}]]>"
            f"</Encrypt><AgentID><![CDATA[{DOC['agent_id']}]]></AgentID></xml>").encode()
    message = crypto(DOC).open_callback(query(DOC), body, now=at(DOC["timestamp"]))
    assert "<Content><![CDATA[hello]]></Content>" in message and "<FromUserName><![CDATA[mycreate]]>" in message
    # The published ciphertext's random prefix, read with the bare cipher: encrypting the
    # message again with it must give WeCom's bytes exactly (padding to 32, length, corpid).
    key = base64.b64decode(DOC["encoding_aes_key"] + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    random16 = (decryptor.update(base64.b64decode(DOC["encrypt"])) + decryptor.finalize())[:16]
    assert crypto(DOC).encrypt(message, random16) == DOC["encrypt"]


def test_round_trip_through_the_envelope_wecom_posts() -> None:
    mine = WeComCrypto("tok3n", "A" * 42 + "Q", "ww0123456789abcdef")
    now = datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)
    message = "<xml><MsgType><![CDATA[event]]></MsgType><Content>机房断电</Content></xml>"
    q, body = mine.envelope(message, timestamp=str(int(now.timestamp())), nonce="42", random16=b"0123456789abcdef",
                            agent_id="1000002")
    assert mine.open_callback(q, body.encode(), now=now + timedelta(seconds=3)) == message


def test_the_documented_template_card_event_is_a_click() -> None:
    click = read_card_click((FIXTURES / "template_card_event.xml").read_text())
    assert click == CardClick(userid="FromUser", task_id="taskid111", key="key111", response_code="ResponseCode")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"msg_signature": "0" * 40}, "signature"),
        ({"nonce": "1372623150"}, "signature"),  # the signature covers the nonce
        ({"msg_signature": ""}, "signature"),
    ],
)
def test_a_callback_with_a_wrong_signature_is_refused(change: dict[str, str], reason: str) -> None:
    with pytest.raises(CallbackRefused) as refused:
        crypto(DECRYPT).open_callback(query(DECRYPT) | change, DECRYPT["post_data"].encode(), now=at(DECRYPT["timestamp"]))
    assert refused.value.reason == reason


def test_a_tampered_ciphertext_fails_the_signature() -> None:
    tampered = DECRYPT["post_data"].replace("Kl7kjoSf", "Kl7kjoSg")
    with pytest.raises(CallbackRefused) as refused:
        crypto(DECRYPT).open_callback(query(DECRYPT), tampered.encode(), now=at(DECRYPT["timestamp"]))
    assert refused.value.reason == "signature"


def test_an_old_callback_is_refused_as_a_replay() -> None:
    later = at(DECRYPT["timestamp"]) + timedelta(minutes=6)
    with pytest.raises(CallbackRefused) as refused:
        crypto(DECRYPT).open_callback(query(DECRYPT), DECRYPT["post_data"].encode(), now=later)
    assert refused.value.reason == "stale"


def test_a_message_sealed_for_another_corp_is_refused() -> None:
    other = WeComCrypto(DECRYPT["token"], DECRYPT["encoding_aes_key"], "ww-another-corp")
    with pytest.raises(CallbackRefused) as refused:
        other.open_callback(query(DECRYPT), DECRYPT["post_data"].encode(), now=at(DECRYPT["timestamp"]))
    assert refused.value.reason == "receiver"


def test_a_document_type_is_refused_before_parsing() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>'
    with pytest.raises(CallbackRefused) as refused:
        crypto(DECRYPT).open_callback(query(DECRYPT), bomb, now=at(DECRYPT["timestamp"]))
    assert refused.value.reason == "malformed"


def test_garbage_in_encrypt_is_malformed_not_a_crash() -> None:
    for garbage in ("not base64!", base64.b64encode(b"short").decode(), base64.b64encode(b"x" * 32).decode()):
        with pytest.raises(CallbackRefused) as refused:
            crypto(DECRYPT).decrypt(garbage)
        assert refused.value.reason == "malformed"


def test_an_encoding_aes_key_must_be_43_base64_characters() -> None:
    with pytest.raises(ValueError):
        WeComCrypto("t", "short", "ww")
    with pytest.raises(ValueError):
        WeComCrypto("t", "!" * 43, "ww")
