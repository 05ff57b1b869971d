"""Exactly-once payment: idempotent confirms, races, transaction id reuse."""

from __future__ import annotations

import asyncio

from .api import Api, close_code, connect, recv_json, recv_until
from .server import HubServer


async def test_same_confirm_twice_one_payment_same_body(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_PAY_1")
    async with Api(keys_hub) as api:
        sid, _ = await api.to_pending("VM_PAY_1", key)
        first = await api.confirm(sid, key, "TXN_IDEM")
        second = await api.confirm(sid, key, "TXN_IDEM")
        assert first.status_code == second.status_code == 200
        assert first.content == second.content
        st = (await api.status(sid, key)).json()
        assert st["seq"] == 7  # created, registered, 3 progress, order, one payment
        r = await api.confirm(sid, key, "TXN_IDEM", amount="20.00")
        assert r.status_code == 409 and r.json() == {"detail": "Transaction ID already used"}
        r = await api.confirm(sid, key, "TXN_IDEM", method="cash")
        assert r.status_code == 409 and r.json() == {"detail": "Transaction ID already used"}


async def test_20_concurrent_confirms_one_event(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_PAY_2")
    async with Api(keys_hub) as api:
        sid, _ = await api.to_pending("VM_PAY_2", key)
        machine = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key, since=0)
        replay = await recv_until(machine, "order.summary")
        assert [f["seq"] for f in replay] == list(range(1, 7))
        results = await asyncio.gather(*(api.confirm(sid, key, "TXN_RACE") for _ in range(20)))
        assert [r.status_code for r in results] == [200] * 20
        assert len({r.content for r in results}) == 1
        paid = await recv_json(machine)
        assert paid["event"] == "payment.completed" and paid["seq"] == 7
        assert await close_code(machine) == 1000  # nothing more: no second payment event
        again = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key, since=0)
        events = []
        while True:
            frame = await recv_json(again)
            events.append(frame["event"])
            if frame["event"] == "payment.completed":
                break
        assert events.count("payment.completed") == 1
        assert await close_code(again) == 1000


async def test_20_concurrent_confirms_different_ids_one_winner(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_PAY_3")
    async with Api(keys_hub) as api:
        sid, _ = await api.to_pending("VM_PAY_3", key)
        results = await asyncio.gather(*(api.confirm(sid, key, f"TXN_{i}") for i in range(20)))
        codes = sorted(r.status_code for r in results)
        assert codes == [200] + [409] * 19
        assert {r.json()["detail"] for r in results if r.status_code == 409} == {
            "Payment already confirmed"}


async def test_transaction_id_on_another_session(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_PAY_4")
    async with Api(keys_hub) as api:
        a, _ = await api.to_pending("VM_PAY_4", key)
        b, _ = await api.to_pending("VM_PAY_4", key)
        assert (await api.confirm(a, key, "TXN_SHARED")).status_code == 200
        before = (await api.status(b, key)).json()
        r = await api.confirm(b, key, "TXN_SHARED")
        assert r.status_code == 409 and r.json() == {"detail": "Transaction ID already used"}
        assert (await api.status(b, key)).json() == before


async def test_confirm_racing_cancel_ends_one_way(keys_hub: HubServer) -> None:
    """A confirm racing a cancel: the session ends paid or cancelled, never both."""
    key = keys_hub.add_machine("VM_PAY_5")
    async with Api(keys_hub) as api:
        for i in range(5):
            sid, _ = await api.to_pending("VM_PAY_5", key)
            pay, cancel = await asyncio.gather(api.confirm(sid, key, f"TXN_RC_{i}"),
                                               api.cancel(sid, key))
            st = (await api.status(sid, key)).json()
            assert st["seq"] == 7
            if pay.status_code == 200:
                assert st["status"] == "payment_completed"
                assert cancel.json()["status"] == "payment_completed"
            else:
                assert pay.status_code == 410 and st["status"] == "cancelled"
