"""The Message list: Twilio's filters and paging fields, as a pure function of the messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, timezone
from typing import Any
from urllib.parse import urlencode

from coordinator.errors import ApiError
from coordinator.sandbox.messages import API_VERSION, Message

DEFAULT_PAGE_SIZE = 50
_FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")


def _matcher(filters: Mapping[str, str]) -> Callable[[Message], bool]:
    try:
        # DateSent filters compare calendar days (UTC); the client sends a full timestamp.
        days = {k: date.fromisoformat(v[:10]) for k, v in filters.items() if k.startswith("DateSent")}
    except ValueError as exc:
        raise ApiError(400, 20001, f"Invalid DateSent filter: {exc}") from exc

    def matches(m: Message) -> bool:
        if m.to != filters.get("To", m.to) or m.from_ != filters.get("From", m.from_):
            return False
        if not days:
            return True
        if m.date_sent is None:
            return False
        sent = m.date_sent.astimezone(timezone.utc).date()
        return (
            sent == days.get("DateSent", sent)
            and sent <= days.get("DateSent<", sent)
            and sent >= days.get("DateSent>", sent)
        )

    return matches


def list_page(newest_first: Sequence[Message], query: Mapping[str, str], account_sid: str) -> dict[str, Any]:
    """One page of `GET .../Messages.json`, newest first, with Twilio's paging fields."""
    filters = {k: query[k] for k in _FILTERS if k in query}
    try:
        page_size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
        page = int(query.get("Page", 0))
    except ValueError as exc:
        raise ApiError(400, 20001, f"Invalid paging parameter: {exc}") from exc
    if not 1 <= page_size <= 1000 or page < 0:
        raise ApiError(400, 20001, "PageSize must be 1..1000 and Page at least 0")
    matches = _matcher(filters)
    selected = [m for m in newest_first if matches(m)]

    start = page * page_size
    token = query.get("PageToken", "")
    # The token names the last message of the previous page, so messages created while
    # a client pages through do not shift what it sees.
    after = [i for i, m in enumerate(selected) if "PA" + m.sid == token]
    if after:
        start = after[0] + 1
    chunk = selected[start : start + page_size]
    path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"

    def page_uri(number: int, page_token: str | None = None) -> str:
        params = {**filters, "PageSize": str(page_size), "Page": str(number)}
        if page_token:
            params["PageToken"] = page_token
        return f"{path}?{urlencode(params)}"

    has_next = bool(chunk) and start + page_size < len(selected)
    return {
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": page_uri(0),
        "messages": [m.resource() for m in chunk],
        "next_page_uri": page_uri(page + 1, "PA" + chunk[-1].sid) if has_next else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": page_uri(page, token or None),
    }
