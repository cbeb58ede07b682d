"""Every Redis key name the project uses, built here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = "coord:"

    def secret(self, name: str) -> str:
        return f"{self.prefix}secret:{name}"

    def complaint(self, complaint_id: str) -> str:
        return f"{self.prefix}complaint:{complaint_id}"

    def complaint_count(self) -> str:
        return f"{self.prefix}complaints:count"

    def buckets(self, stream: str, day: int) -> str:
        """Bucket counts of one stream for one UTC day. Hash fields: "<bucket start>" ->
        count, "<bucket start>:r" -> repeats, "<bucket start>:g" -> regulator channel."""
        return f"{self.prefix}buckets:{stream}:{day}"

    def complaint_stats(self, day: int) -> str:
        """Complaint statistics of one UTC day (complaints.py). Hash fields:
        "<hour>|<category>|<region>|<channel>" -> count, the same + "|r" -> repeats."""
        return f"{self.prefix}complaint-stats:{day}"

    def subscriber(self, subscriber_hash: str) -> str:
        """When the subscriber last complained (epoch seconds), for repeat flags."""
        return f"{self.prefix}subscriber:{subscriber_hash}"

    def stream_state(self, stream: str) -> str:
        """Hash: version, doc (the detector's state)."""
        return f"{self.prefix}stream-state:{stream}"

    def stream_surge(self, stream: str) -> str:
        return f"{self.prefix}stream-surge:{stream}"

    def streams(self) -> str:
        return f"{self.prefix}streams"

    def incident(self, incident_id: str) -> str:
        return f"{self.prefix}incident:{incident_id}"

    def incidents(self) -> str:
        """Sorted set of incident ids by opening time."""
        return f"{self.prefix}incidents"

    def open_surge(self, surge_key: str) -> str:
        """The id of the open incident for a surge key, if any."""
        return f"{self.prefix}open-surge:{surge_key}"

    def open_group(self, group: str) -> str:
        """Sorted set of the open incidents of one surge-key group ("broadband",
        "drill:broadband") by opening time: a category-wide surge joins any of them."""
        return f"{self.prefix}open-group:{group}"

    def open_group_index(self) -> str:
        """Set once the open-group sets were built from the incidents already open."""
        return f"{self.prefix}open-group-index"

    def timeline(self, incident_id: str) -> str:
        return f"{self.prefix}timeline:{incident_id}"

    def steps(self, incident_id: str) -> str:
        """Hash: step key -> claim {owner, done, lease_until}."""
        return f"{self.prefix}steps:{incident_id}"

    def surges(self) -> str:
        """Sorted set of surge documents by detection time."""
        return f"{self.prefix}surges"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.prefix}delivery:{delivery_id}"

    def deliveries(self, incident_id: str) -> str:
        return f"{self.prefix}deliveries:{incident_id}"

    def outbox(self, medium: str) -> str:
        """Sorted set of the delivery ids of one medium ("sms", "email") waiting to be
        sent, by when they are due (a claim moves its score to the lease's end)."""
        return f"{self.prefix}outbox:{medium}"

    def script_reach(self, incident_id: str, version: int) -> str:
        """Set of the people sent one script version (a script delivery of it, any medium)."""
        return f"{self.prefix}script-reach:{incident_id}:{version}"

    def reach_index(self) -> str:
        """Set once the reach sets were filled in from the deliveries already stored."""
        return f"{self.prefix}script-reach-index"

    def claims(self) -> str:
        """Sorted set of the delivery ids claimed and not finished, by their first claim
        time (the outbox's oldest claim, GET /metrics)."""
        return f"{self.prefix}claims"

    def shared_outbox(self) -> str:
        """The one outbox of every medium before there was one per medium; emptied into
        those when a store opens."""
        return f"{self.prefix}outbox"

    def provider(self, provider_id: str) -> str:
        """The delivery id a provider id (Twilio SID, Message-ID) belongs to."""
        return f"{self.prefix}provider:{provider_id}"

    def sms_to(self, phone: str) -> str:
        """Sorted set of the SMS delivery ids a provider accepted for a phone, in the order
        recorded (scores from `sms_order()`): the index an SMS reply is matched through
        (the newest few kept)."""
        return f"{self.prefix}sms-to:{phone}"

    def sms_order(self) -> str:
        """Counter numbering the accepted SMS, across instances (their clocks may agree
        to the second)."""
        return f"{self.prefix}sms-order"

    def unsettled(self) -> str:
        """Sorted set of the SMS delivery ids still `sent` (no final status yet), by when
        their status is next looked up at the provider."""
        return f"{self.prefix}unsettled-sms"

    def opt_outs(self) -> str:
        """Set of phones that replied STOP (mirrored from the provider)."""
        return f"{self.prefix}opt-outs"

    def acks(self, incident_id: str) -> str:
        return f"{self.prefix}acks:{incident_id}"

    def webhook(self, subscriber: str, event_id: str = "") -> str:
        """Hash: doc, owner, done (one event for one webhook subscriber); with no event
        id, the prefix of those keys."""
        return f"{self.prefix}webhook:{subscriber}:{event_id}"

    def webhook_queue(self, subscriber: str) -> str:
        """Sorted set of the event ids waiting for a subscriber, by when they are due (a
        claim moves the score to the lease's end)."""
        return f"{self.prefix}webhook-queue:{subscriber}"

    def webhook_subscribers(self) -> str:
        """Set of the subscribers that ever had a queue."""
        return f"{self.prefix}webhook-subscribers"

    def instances(self) -> str:
        """Hash: instance id -> its last heartbeat (protocols/instances.Instance)."""
        return f"{self.prefix}instances"

    def instances_seen(self) -> str:
        """Sorted set of instance ids by when each was last seen."""
        return f"{self.prefix}instances-seen"

    def reload_seq(self) -> str:
        """Counter numbering the reload requests."""
        return f"{self.prefix}reload-seq"

    def reload_requests(self) -> str:
        """Sorted set of reload request documents by their number."""
        return f"{self.prefix}reload-requests"

    def reload_outcomes(self, request_id: str) -> str:
        """Hash: instance id -> its answer to one reload request."""
        return f"{self.prefix}reload-outcomes:{request_id}"

    def alarm(self, source: str, key: str) -> str:
        """Hash: revision, incident, doc (one network alarm's state; store/redis/alarms.py)."""
        return f"{self.prefix}alarm:{source}:{key}"

    def incident_alarms(self, incident_id: str) -> str:
        """Set of the alarms ("source NUL key") attached to an incident; with no id, the prefix."""
        return f"{self.prefix}incident-alarms:{incident_id}"

    def replication_fence(self) -> str:
        """Written right before WAIT (connection.py `_confirmed`): whatever was written
        before it, on any connection, is on the replicas once the fence is."""
        return f"{self.prefix}replication-fence"

    def pattern(self) -> str:
        return f"{self.prefix}*"
