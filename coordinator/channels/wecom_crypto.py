"""WeCom's callback protocol (加解密方案说明, developer.work.weixin.qq.com/document/path/90968).

msg_signature = sha1 of the token, timestamp, nonce and ciphertext, sorted and joined, in
lower-case hex. The ciphertext is base64(AES-256-CBC(random(16) + msg_len(4 bytes,
network order) + msg + receive_id)), with AESKey = base64decode(EncodingAESKey + "="),
IV = AESKey[:16], and PKCS#7 padding to a multiple of 32 bytes. For an internal app the
receive_id is the corpid. Checked against the vectors WeCom publishes
(tests/test_wecom_crypto.py)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from coordinator.channels.messenger import CardClick
from coordinator.errors import CallbackRefused

BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16
MAX_BODY_BYTES = 64 * 1024
# WeCom retries an unanswered callback within seconds; an older one is a replay.
MAX_SKEW = timedelta(minutes=5)


def msg_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted((token, timestamp, nonce, encrypted))).encode()).hexdigest()


class WeComCrypto:
    """One app's callback secrets: the Token, the EncodingAESKey and the receive_id."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != 43:
            raise ValueError("an EncodingAESKey has 43 characters")
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            raise ValueError("the EncodingAESKey is not base64") from None
        self._token = token
        self._key = key
        self._receive_id = receive_id

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return msg_signature(self._token, timestamp, nonce, encrypted)

    def encrypt(self, message: str, random16: bytes) -> str:
        if len(random16) != 16:
            raise ValueError("the random prefix has 16 bytes")
        body = message.encode()
        plain = random16 + struct.pack(">I", len(body)) + body + self._receive_id.encode()
        pad = BLOCK - len(plain) % BLOCK
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).encryptor()
        return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
        except binascii.Error:
            raise CallbackRefused("malformed", "the ciphertext is not base64") from None
        if not data or len(data) % 16:
            raise CallbackRefused("malformed", "the ciphertext is not whole AES blocks")
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad or len(plain) - pad < 20:
            raise CallbackRefused("malformed", "the plaintext's padding is wrong")
        plain = plain[:-pad]
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise CallbackRefused("malformed", "msg_len runs past the plaintext")
        if plain[20 + length :] != self._receive_id.encode():
            raise CallbackRefused("receiver", "the message was sealed for another receive_id")
        try:
            return plain[20 : 20 + length].decode()
        except UnicodeDecodeError:
            raise CallbackRefused("malformed", "the message is not UTF-8") from None

    def check_url(self, query: Mapping[str, str], *, now: datetime) -> str:
        """The answer to WeCom's URL check (GET with msg_signature, timestamp, nonce and
        echostr, URL-decoded): the plaintext of echostr, sent back as it is."""
        return self.decrypt(self._verified(query, query.get("echostr", ""), now))

    def open_callback(self, query: Mapping[str, str], body: bytes, *, now: datetime) -> str:
        """The message (XML) inside a callback POST, once its signature and age check out."""
        if len(body) > MAX_BODY_BYTES:
            raise CallbackRefused("malformed", f"a callback body over {MAX_BODY_BYTES} bytes")
        encrypted = _xml_fields(body).get("Encrypt", "")
        return self.decrypt(self._verified(query, encrypted, now))

    def envelope(self, message: str, *, timestamp: str, nonce: str, random16: bytes,
                 agent_id: str) -> tuple[dict[str, str], str]:
        """What WeCom POSTs to the callback URL for `message` (回调配置, 3.2): the query and
        the body."""
        encrypted = self.encrypt(message, random16)
        query = {"msg_signature": self.sign(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
        body = (f"<xml><ToUserName><![CDATA[{self._receive_id}]]></ToUserName><AgentID><![CDATA[{agent_id}]]>"
                f"</AgentID><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
        return query, body

    def _verified(self, query: Mapping[str, str], encrypted: str, now: datetime) -> str:
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        expected = self.sign(timestamp, nonce, encrypted)
        if not encrypted or not hmac.compare_digest(expected, query.get("msg_signature", "")):
            raise CallbackRefused("signature", "msg_signature does not match")
        try:
            sent_at = datetime.fromtimestamp(int(timestamp), timezone.utc)
        except (ValueError, OverflowError):
            raise CallbackRefused("malformed", f"timestamp {timestamp!r} is not epoch seconds") from None
        if abs(now - sent_at) > MAX_SKEW:
            raise CallbackRefused("stale", f"timestamp {timestamp} is {now - sent_at} away from now")
        return encrypted


def read_card_click(message: str) -> CardClick | None:
    """The button press in a decrypted callback message, or None for any other event."""
    fields = _xml_fields(message.encode())
    if fields.get("MsgType") != "event" or fields.get("Event") != "template_card_event":
        return None
    if not fields.get("FromUserName") or not fields.get("TaskId") or "EventKey" not in fields:
        raise CallbackRefused("malformed", "a template_card_event without FromUserName, TaskId or EventKey")
    return CardClick(
        userid=fields["FromUserName"],
        task_id=fields["TaskId"],
        key=fields["EventKey"],
        response_code=fields.get("ResponseCode") or None,
    )


def _xml_fields(body: bytes) -> dict[str, str]:
    """The text of each top-level element. Anyone can POST to the URL, so a document
    type (where entity expansion hides) is refused before parsing."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise CallbackRefused("malformed", "a callback with a document type")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise CallbackRefused("malformed", f"not XML: {exc}") from None
    return {child.tag: (child.text or "").strip() for child in root}
