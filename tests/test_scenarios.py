"""The guide's five integration scenarios, against real hubs (short timeouts via env)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import httpx
import pytest

from .api import Api, ORDER_DATA, auth, close_code, connect, recv_json, recv_until
from .server import HubServer

APP_KEY = "app-secret-key"


def ms(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


async def test_scenario_1_happy_path(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_SCN_1")
    async with Api(keys_hub) as api:
        sid, _ = await api.to_pending("VM_SCN_1", key)
        st = (await api.status(sid, key)).json()
        assert st["user_progress"] == "payment_pending" and st["payment_amount"] == 19.99
        r = await api.confirm(sid, key, "TXN_HAPPY", amount=st["payment_amount"])
        assert r.status_code == 200 and r.json()["status"] == "payment_completed"


async def test_scenario_2_app_payment(keys_hub: HubServer) -> None:
    """Pay on App: the app backend pays while the phone is still designing."""
    key = keys_hub.add_machine("VM_SCN_2")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_SCN_2", key)
        token = (await api.register(sid, "VM_SCN_2")).json()["phone_token"]
        machine = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
        await recv_json(machine)
        url = api.path(sid, "/app-payment")
        body = {"payment_amount": "19.99", "transaction_id": "pi_3Nabc",
                "order_data": {k: v for k, v in ORDER_DATA.items() if k != "designImage"}}
        # the phone can never mark a session paid; nor can the machine use this route
        assert (await api.http.post(url, json=body, headers=auth(token))).status_code == 403
        assert (await api.http.post(url, json=body, headers=auth(key))).status_code == 403
        bad = {**body, "payment_amount": 20.00}
        r = await api.http.post(url, json=bad, headers=auth(APP_KEY))
        assert r.status_code == 400
        assert r.json() == {"detail": "Payment amount does not match order total"}
        r = await api.http.post(url, json=body, headers=auth(APP_KEY))
        assert r.status_code == 200, r.text
        assert r.json()["payment_method"] == "app" and r.json()["status"] == "payment_completed"
        again = await api.http.post(url, json=body, headers=auth(APP_KEY))
        assert again.status_code == 200 and again.json() == r.json()
        frames = await recv_until(machine, "payment.completed")
        assert frames[-1]["data"]["payment_method"] == "app"
        assert frames[-1]["data"]["payment_amount"] == 19.99
        assert await close_code(machine) == 1000
        st = (await api.status(sid, key)).json()
        assert st["status"] == "payment_completed" and st["payment_method"] == "app"
        assert st["payment_amount"] == 19.99
        info = (await api.http.get(api.path(sid, "/order-info"), headers=auth(key))).json()
        assert info["order_summary"]["model"] == "iPhone 15 Pro"


async def test_scenario_2b_app_payment_after_order(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_SCN_2B")
    async with Api(keys_hub) as api:
        sid, _ = await api.to_pending("VM_SCN_2B", key)
        r = await api.http.post(api.path(sid, "/app-payment"), headers=auth(APP_KEY),
                                json={"payment_amount": 19.99, "transaction_id": "pi_2"})
        assert r.status_code == 200, r.text
        r = await api.confirm(sid, key, "TXN_LATE")
        assert r.status_code == 409 and r.json() == {"detail": "Payment already confirmed"}


@pytest.fixture
def quick_hub(fresh_hub) -> HubServer:  # type: ignore[no-untyped-def]
    """One timeout minute lasts 0.5 s; the payment deadline is 1 s."""
    return fresh_hub(HUB_SESSION_MINUTE_S="0.5", HUB_PAYMENT_TIMEOUT_S="1",
                     HUB_APP_KEY=APP_KEY)


async def test_scenario_3_session_timeout_pushed_within_1s(quick_hub: HubServer) -> None:
    key = quick_hub.add_machine("VM_SCN_3")
    async with Api(quick_hub) as api:
        r = await api.create("VM_SCN_3", key, session_timeout_minutes=1)
        sid, expires = r.json()["session_id"], ms(r.json()["expires_at"])
        machine = await connect(quick_hub, f"/api/vending/session/{sid}/ws", key)
        await recv_json(machine)
        frames = await recv_until(machine, "session.expired", timeout=5)
        heard = time.time()
        assert frames[-1]["status"] == "expired"
        assert heard - expires < 1.0, f"pushed {heard - expires:.3f} s after the deadline"
        assert ms(frames[-1]["at"]) >= expires
        assert await close_code(machine) == 1000
        st = await api.status(sid, key)
        assert st.status_code == 200 and st.json()["status"] == "expired"
        r = await api.register(sid, "VM_SCN_3")
        assert r.status_code == 410 and r.json() == {"detail": "Session has expired"}
        ws = await connect(quick_hub, f"/api/vending/session/{sid}/ws", key)
        assert await close_code(ws) == 4410


async def test_payment_timeout_is_5_minutes_scaled(quick_hub: HubServer) -> None:
    """At payment_pending the deadline becomes HUB_PAYMENT_TIMEOUT_S after the order."""
    key = quick_hub.add_machine("VM_SCN_3B")
    async with Api(quick_hub) as api:
        r = await api.create("VM_SCN_3B", key, session_timeout_minutes=60)
        sid = r.json()["session_id"]
        token = (await api.register(sid, "VM_SCN_3B")).json()["phone_token"]
        await api.order(sid, token)
        st = (await api.status(sid, key)).json()
        assert abs(ms(st["expires_at"]) - ms(st["last_activity"]) - 1.0) < 0.01
        machine = await connect(quick_hub, f"/api/vending/session/{sid}/ws", key)
        await recv_json(machine)
        await recv_until(machine, "session.expired", timeout=4)
        r = await api.confirm(sid, key, "TXN_TOO_LATE")
        assert r.status_code == 410 and r.json() == {"detail": "Session has expired"}


async def test_scenario_4_payment_failure_then_retry(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_SCN_4")
    async with Api(keys_hub) as api:
        sid, _ = await api.to_pending("VM_SCN_4", key)
        before = (await api.status(sid, key)).json()
        r = await api.confirm(sid, key, "TXN_FAIL_1", amount=18.99)
        assert r.status_code == 400
        assert r.json() == {"detail": "Payment amount does not match order total"}
        r = await api.confirm(sid, key, "TXN_FAIL_1", method="bitcoin")
        assert r.status_code == 400 and r.json() == {"detail": "Invalid payment method"}
        assert (await api.status(sid, key)).json() == before
        r = await api.confirm(sid, key, "TXN_RETRY_2")
        assert r.status_code == 200 and r.json()["transaction_id"] == "TXN_RETRY_2"
        r = await api.confirm(sid, key, "TXN_RETRY_3")
        assert r.status_code == 409 and r.json() == {"detail": "Payment already confirmed"}


async def test_scenario_5_abandonment_expiry_cleanup(quick_hub: HubServer) -> None:
    key = quick_hub.add_machine("VM_SCN_5")
    async with Api(quick_hub) as api:
        r = await api.create("VM_SCN_5", key, session_timeout_minutes=2)
        sid = r.json()["session_id"]
        machine = await connect(quick_hub, f"/api/vending/session/{sid}/ws", key)
        await recv_json(machine)
        token = (await api.register(sid, "VM_SCN_5")).json()["phone_token"]
        phone = await connect(quick_hub, f"/api/vending/session/{sid}/ws", token)
        await recv_json(phone)
        await api.progress(sid, token, "brand_selected")
        await phone.close()  # the shopper walks away
        frames = await recv_until(machine, "session.expired", timeout=5,
                                  kinds=("event", "presence"))
        kinds = [(f["type"], f.get("event") or f.get("online")) for f in frames]
        assert ("presence", True) in kinds and ("presence", False) in kinds
        assert kinds.index(("presence", False)) < kinds.index(("event", "session.expired"))
        r = await api.cancel(sid, key)  # the guide's cleanup after timeout
        assert r.status_code == 200
        assert r.json() == {"success": True, "message": "Session cancelled successfully",
                            "session_id": sid, "status": "expired"}
        st = (await api.status(sid, key)).json()
        assert st["status"] == "expired" and st["seq"] == 4


async def test_cancel_open_session_and_writes_after(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_SCN_6")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_SCN_6", key)
        r = await api.cancel(sid, key)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = await api.register(sid, "VM_SCN_6")
        assert r.status_code == 410 and r.json() == {"detail": "Session has been cancelled"}
        assert (await api.cancel(sid, key)).json()["status"] == "cancelled"
        r = await api.http.post(api.path(sid, "/validate"), headers=auth(key))
        assert r.json()["valid"] is False
        assert r.json()["session_health"]["status"] == "cancelled"


async def test_a_burst_wider_than_the_redis_pool_waits_instead_of_failing(keys_hub: HubServer) -> None:
    """150 status polls at once, more than redis-py's default pool cap (100), which
    answered 503 past it: every one answers 200 (the hub's pool is larger, and past its
    own cap a request waits for a connection)."""
    key = keys_hub.add_machine("VM_BURST")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_BURST", key)
    limits = httpx.Limits(max_connections=150, max_keepalive_connections=150)
    async with httpx.AsyncClient(base_url=keys_hub.url, limits=limits, timeout=30) as http:
        rs = await asyncio.gather(*(http.get(f"/api/vending/session/{sid}/status",
                                             headers=auth(key)) for _ in range(150)))
    assert [r.status_code for r in rs] == [200] * 150
