"""SMS over SMPP 3.4 to the operator's SMSC (issue #18): the channel (channel.py) on an
ESME session (session.py) of our own, with the text, receipt and reply handling as pure
functions beside it. docs/smpp.md explains the choices."""

from coordinator.channels.smpp.channel import SmppSms
from coordinator.channels.smpp.config import SmppConfig
from coordinator.channels.smpp.inbound import InboundSms
from coordinator.channels.smpp.sent import DeliveryReport
from coordinator.channels.smpp.text import segment_count, split_text

__all__ = ["DeliveryReport", "InboundSms", "SmppConfig", "SmppSms", "segment_count", "split_text"]
