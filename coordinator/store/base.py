"""The Store protocol: everything the service keeps. Two backends implement it and one
contract suite (tests/test_store_contract.py) runs against both.

Implementations raise StoreError when the backend cannot be reached (retryable), and
IncidentNotFound for an unknown incident id."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple, Protocol, Sequence

from ..models import ALL_REGIONS, DELIVERY_RANK, Ack, Complaint, DrillRun, Delivery, DeliveryKey, DeliveryStatus, Incident, Surge, TimelineEvent
from .stats import StatRow


class Store(Protocol):
    bucket_seconds: int
    # True when no other process writes to the same store (SQLite): readers may cache.
    single_process: bool

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""

    async def get_or_create_secret(self, name: str, candidate: str) -> str:
        """The secret stored under `name`; stores `candidate` first if there is none, so
        every instance sharing the store ends up with the same value."""

    # --- complaints and stream counts --------------------------------------------

    async def add_complaints(
        self, complaints: Sequence[Complaint], repeat_window: timedelta = timedelta(days=7)
    ) -> list[Added]:
        """Store each complaint unless its id is already stored (also earlier in the same
        batch) and count the new ones into their streams' buckets, atomically per
        complaint: a complaint is counted exactly when it is stored. A new complaint
        whose subscriber complained before, at most `repeat_window` earlier, is a repeat
        and also counts into its streams' repeat counts. Returns, per input, whether it
        was new and whether it was a repeat."""

    async def get_complaint(self, complaint_id: str) -> Complaint | None: ...

    async def count_complaints(self) -> int: ...

    async def bucket_counts(
        self, stream: str, start: datetime, end: datetime, kind: CountKind = "all"
    ) -> dict[int, int]:
        """Non-zero counts of `stream` by bucket start (epoch seconds), start <= t < end:
        of all its complaints, of the repeats, or of those from the regulator channel."""

    async def bucket_counts_many(
        self, streams: Sequence[str], start: datetime, end: datetime, kind: CountKind = "all"
    ) -> dict[str, dict[int, int]]:
        """`bucket_counts` of several streams in one round trip; every stream asked for is
        a key, with {} when it has no counts in the range."""

    async def stream_names(self) -> list[str]: ...

    async def load_stream_state(self, stream: str) -> tuple[dict[str, Any] | None, int]:
        """The detector state saved for `stream` and its version (0: none yet)."""

    async def save_stream_state(self, stream: str, state: dict[str, Any], version: int) -> bool:
        """Save `state` as version `version` if the stored one is `version - 1`; False if
        another instance saved first (then load and redo)."""

    async def open_stream_surge(self, surge: Surge) -> bool:
        """Mark a surge open on its stream unless one is: True for the one instance that
        reports it."""

    async def stream_surge(self, stream: str) -> Surge | None: ...

    async def close_stream_surge(self, stream: str) -> None: ...

    # --- incidents ---------------------------------------------------------------

    async def open_incident(
        self, incident: Incident, event: TimelineEvent, *, related: bool = False
    ) -> tuple[Incident, bool]:
        """Create `incident` with `event` as the first entry of its timeline, unless an open
        incident with the same surge_key exists, or with `related` an open incident of
        the same event seen through the other stream (`related_to`): then return that
        one (the oldest) and False. Atomic across every instance sharing the store, so
        a regional and a category-wide surge reported at once open one incident."""

    async def get_incident(self, incident_id: str) -> Incident: ...

    async def save_incident(self, incident: Incident) -> None:
        """Replace a stored incident whose revision is `incident.revision - 1`, else raise
        Conflict (someone saved meanwhile). When it is no longer open its surge key is
        freed."""

    async def list_incidents(
        self, *, open_only: bool | None = None, drill: bool | None = None, playbook: str | None = None
    ) -> list[Incident]:
        """Incidents, newest first, filtered."""

    async def append_timeline(self, incident_id: str, event: TimelineEvent) -> None: ...

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """The incident's events, oldest first (append order)."""

    # --- timed steps: timers are data, each due step claimed by one worker ----------

    async def claim_step(self, incident_id: str, key: str, owner: str, now: datetime, lease_seconds: float) -> bool:
        """Claim step `key` of an incident for `owner` until now + lease. True when it is
        not done and nobody else holds an unexpired claim (a crashed worker's claim
        lapses with its lease)."""

    async def finish_step(self, incident_id: str, key: str) -> None:
        """Mark a claimed step done for good."""

    async def finished_steps(self, incident_id: str) -> set[str]: ...

    # --- surges --------------------------------------------------------------------

    async def record_surge(self, surge: Surge) -> None: ...

    async def surges(self, *, key: str | None = None, since: datetime | None = None) -> list[Surge]:
        """Recorded surges, oldest first, optionally of one stream and from a time on."""

    # --- deliveries and acknowledgements -----------------------------------------

    async def add_delivery(self, delivery: Delivery, due: datetime | None = None) -> bool:
        """Record a delivery unless one with the same key exists, and put it in the
        outbox, due at `due` (now if None); True if it was new."""

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> int:
        """`add_delivery` for many at once (one transaction or round trip); returns how
        many were new."""

    async def claim_deliveries(
        self, owner: str, now: datetime, lease_seconds: float, limit: int, medium: str | None = None
    ) -> list[Delivery]:
        """Up to `limit` outbox deliveries due by `now`, oldest first, each leased to
        `owner` until now + lease: no one else gets it meanwhile, and if the owner dies
        the lease lapses and it is due again. `medium` ("sms", "email") claims only
        deliveries on that medium (`DeliveryKey.medium`), so each channel has its own
        queue and moves at its own pace."""

    async def finish_delivery(self, key: DeliveryKey) -> None:
        """Take a delivery out of the outbox for good (sent, or failed for good)."""

    async def retry_delivery(self, key: DeliveryKey, due: datetime, *, attempts: int, error: str) -> None:
        """Put a claimed delivery back in the outbox, due at `due`, noting the attempt."""

    async def delivery_by_provider(self, provider_id: str) -> Delivery | None:
        """The delivery a provider id (Twilio SID, Message-ID) belongs to."""

    async def outbox_size(self) -> int: ...

    async def get_delivery(self, key: DeliveryKey) -> Delivery | None: ...

    async def update_delivery(
        self,
        key: DeliveryKey,
        status: DeliveryStatus,
        *,
        at: datetime,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> Delivery:
        """Move a delivery forward to `status`. A status at or below the current one's rank
        (a repeated or late callback) changes nothing. Returns the stored delivery."""

    async def update_deliveries(self, updates: Sequence[StatusUpdate]) -> list[Moved]:
        """Many status updates in one transaction (SQLite) or one script call (Redis),
        applied in order, each as `update_delivery` does: a status only moves forward.
        A provider id is recorded even when the status does not move (a callback may
        have moved it first), and an update with `finish` also takes the delivery out of
        the outbox. One answer per update; `Moved(None, False)` for an unknown delivery."""

    async def deliveries(self, incident_id: str) -> list[Delivery]: ...

    async def renew_claims(self, owner: str, keys: Sequence[DeliveryKey], until: datetime) -> None:
        """Extend the leases of deliveries `owner` still holds (claimed, not finished)
        to `until`: a live worker keeps its claims however long they wait for a send
        slot, and a dead worker's lapse after one short lease."""

    async def sms_sent_to(self, phone: str, limit: int = 20) -> list[Delivery]:
        """The SMS deliveries a provider accepted for `phone`, the last recorded first: the
        index an SMS reply is matched through. Kept by `update_deliveries` (an update
        with `finish` and an accepted status; recorded once per delivery)."""

    async def unsettled_sms(self, before: datetime, limit: int) -> list[Delivery]:
        """SMS deliveries still `sent` (accepted, no final status yet) whose check time is
        at or before `before`, earliest first. An SMS enters this index with its move
        to `sent` (check time: that moment) and leaves it when its status moves on."""

    async def defer_unsettled(self, keys: Sequence[DeliveryKey], until: datetime | None) -> None:
        """Move their check time to `until`; None takes them out of the index (given up)."""

    async def set_opt_out(self, phone: str, opted_out: bool) -> None:
        """Mirror a recipient's STOP (True) or START (False) reply."""

    async def opted_out(self) -> set[str]:
        """Phones that replied STOP and not START since."""

    async def record_ack(self, ack: Ack, event: TimelineEvent | None = None) -> bool:
        """Record an acknowledgement; the first per (incident, person, version, role) wins.
        A new one's `event` is appended to the incident's timeline in the same write.
        True if it was new."""

    async def acks(self, incident_id: str) -> list[Ack]:
        """The incident's acknowledgements, oldest first."""

    async def acked_versions(self, incident_id: str, person_id: str, versions: Sequence[int]) -> set[int]:
        """Which of `versions` the person has acknowledged (point lookups: an SMS reply
        must not read every acknowledgement of a 10,000-person fan-out)."""


    # --- access (store/access.py) -------------------------------------------------

    async def start_session(self, session_id: str, user: str, stamp: str, now: datetime, expires: datetime) -> None:
        """Record a signed-in session; `stamp` fingerprints the user's credentials then, so
        a password change ends every session begun before it. Drops expired sessions."""

    async def session_holder(self, session_id: str, now: datetime) -> tuple[str, str] | None:
        """(user, stamp) of a live session; None once it ended or expired."""

    async def end_session(self, session_id: str) -> None: ...

    async def end_sessions_of(self, user: str) -> int:
        """End every session of `user` (removed, or a new password); how many ended."""

    async def note_login_failure(self, key: str, now: datetime, forget_after: float) -> int:
        """Count one failed sign-in under `key` (a user or an address); the count restarts
        once no failure came for `forget_after` seconds. Returns the new count."""

    async def login_failures(self, key: str, now: datetime, forget_after: float) -> tuple[int, datetime | None]:
        """(failures, time of the last) under `key`; (0, None) once forgotten."""

    async def clear_login_failures(self, key: str) -> None: ...

    # --- drills (store/drill_runs.py) ----------------------------------------------

    async def create_drill_run(self, run: DrillRun) -> bool:
        """Record a new run; False if a run with its id exists (a scheduled firing's id is
        the drill and its time, so it runs once however many instances see it due)."""

    async def save_drill_run(self, run: DrillRun) -> None:
        """Replace a run whose stored revision is `run.revision - 1`, else raise Conflict."""

    async def get_drill_run(self, run_id: str) -> DrillRun | None: ...

    async def drill_runs(self, drill_id: str | None = None) -> list[DrillRun]:
        """Runs, newest first, of one drill or of all."""

    async def drill_cursor(self, drill_id: str) -> datetime | None:
        """The drill's next firing not yet handled (None before the scheduler first saw it)."""

    async def move_drill_cursor(self, drill_id: str, expected: datetime | None, new: datetime) -> bool:
        """Set the cursor to `new` if it is still `expected`: True for the one instance
        that handles the firings in between."""

    async def acquire_lease(self, name: str, owner: str, now: datetime, seconds: float) -> bool:
        """Hold lease `name` for `owner` until now + seconds: True if it was free, lapsed, or
        already `owner`'s (a renewal); False while someone else holds it."""

    # --- statistics (store/stats.py) ------------------------------------------------

    async def complaint_stats(self, start: datetime, end: datetime) -> list[StatRow]:
        """Counts and repeats of real (not drill) complaints per UTC hour, category,
        region and channel, for the hours start <= hour < end, oldest first; kept by
        `add_complaints` (complaints stored before these counts existed are not in them)."""


CountKind = Literal["all", "repeat", "regulator"]


# The delivery media (`DeliveryKey.medium`); each has its own outbox queue.
MEDIA = ("sms", "email")
# What a send's result records when the provider took the message.
ACCEPTED = frozenset({DeliveryStatus.sent, DeliveryStatus.delivered})


def claimed(doc: str | bytes, claimed_at: float | str | bytes | None) -> Delivery:
    """A claimed delivery: its stored document, and the first-claim time the store keeps
    beside it (epoch seconds; None from a store written before it was kept)."""
    delivery = Delivery.model_validate_json(doc)
    if claimed_at is None:
        return delivery
    return delivery.model_copy(update={"claimed_at": datetime.fromtimestamp(float(claimed_at), timezone.utc)})


def related_to(surge_key: str) -> tuple[str, list[str], bool]:
    """The incidents that belong to the same event as one on `surge_key`: its group
    (the key up to its region: "broadband", "drill:broadband"), the other keys whose
    open incident it joins, and whether any open incident of the group does. A regional
    surge joins the category-wide incident; a category-wide surge joins any incident of
    its category (the same complaints count into both streams)."""
    group, _, region = surge_key.rpartition("/")
    if region == ALL_REGIONS:
        return group, [], True
    return group, [f"{group}/{ALL_REGIONS}"], False


def medium_of(delivery_id: str) -> str:
    """The medium of a delivery id (`DeliveryKey.as_id`): its channel up to any "-"."""
    return delivery_id.rsplit(":", 1)[-1].split("-", 1)[0]


class StatusUpdate(NamedTuple):
    """A delivery's new status: from the send's own result, or a provider's callback."""

    key: DeliveryKey | None
    """None: the delivery is found by `provider_id` (a callback without our id)."""
    status: DeliveryStatus
    at: datetime
    provider_id: str | None = None
    error: str | None = None
    finish: bool = False
    """The provider accepted it: out of the outbox for good."""


class Moved(NamedTuple):
    delivery: Delivery | None
    """As stored after the update; None when there is no such delivery."""
    moved: bool
    """The status went forward."""


def apply_update(current: Delivery, update: StatusUpdate) -> tuple[Delivery, bool]:
    """`current` after `update` and whether its status moved; the rule both stores keep
    (Redis in its Lua script): the status only moves forward, with its time and error;
    a provider id is taken when moving, or when none is known yet."""
    if DELIVERY_RANK[update.status] > DELIVERY_RANK[current.status]:
        return current.model_copy(update={
            "status": update.status,
            "updated_at": update.at,
            "provider_id": update.provider_id or current.provider_id,
            "error": update.error if update.error is not None else current.error,
        }), True
    if update.provider_id and current.provider_id is None:
        return current.model_copy(update={"provider_id": update.provider_id}), False
    return current, False


class Added(NamedTuple):
    new: bool
    repeat: bool


def ack_id(ack: Ack) -> str:
    return ack_key(ack.person_id, ack.version, ack.role)


def ack_key(person_id: str, version: int | None, role: str | None = None) -> str:
    """An acknowledgement's id within its incident: one per (person, version, role)."""
    return f"{person_id}:{version if version is not None else '-'}:{role or '-'}"
