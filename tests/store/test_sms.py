"""The SMS store contract (opt-outs), on SQLite and on a real Redis."""

from __future__ import annotations

from coordinator.store import Store


async def test_opt_outs_are_mirrored(store: Store) -> None:
    await store.set_opt_out("+8613900000001", True)
    await store.set_opt_out("+8613900000002", True)
    await store.set_opt_out("+8613900000002", False)
    await store.set_opt_out("+8613900000003", False)
    assert await store.opted_out() == {"+8613900000001"}
