"""The guide's flow end to end on a real ``hub serve``: REST and live sockets."""

from __future__ import annotations

import asyncio

import httpx

from .api import Api, ORDER_DATA, auth, connect, recv_json, recv_until, close_code
from .server import HubServer

FLOW = ["session.created", "phone.registered", "progress", "progress", "progress",
        "order.summary", "payment.completed"]


async def test_guide_testing_guide_literally_in_open_mode(open_hub: HubServer) -> None:
    """Testing Guide steps 1–3 with the guide's own bodies (open mode, no credentials)."""
    async with httpx.AsyncClient(base_url=open_hub.url) as http:
        r = await http.post("/api/vending/create-session", headers={
            "Content-Type": "application/json"}, content=b'''{
            "machine_id": "TEST_VM_001",
            "location": "Test Location",
            "session_timeout_minutes": 30
          }''')
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"success", "session_id", "qr_url", "expires_at",
                             "timeout_minutes", "machine_info"}
        assert body["success"] is True and body["timeout_minutes"] == 30
        sid = body["session_id"]
        assert sid.startswith("TEST_VM_001_")
        assert body["qr_url"] == ("https://pimpmycase.shop/?qr=true&machine_id=TEST_VM_001"
                                  f"&session_id={sid}&location=Test%20Location")
        assert body["machine_info"]["id"] == "TEST_VM_001"
        assert body["expires_at"].endswith("Z")

        r = await http.get(f"/api/vending/session/{sid}/status")
        assert r.status_code == 200
        st = r.json()
        assert (st["status"], st["user_progress"], st["machine_id"]) == (
            "active", "started", "TEST_VM_001")

        confirm = {"session_id": sid, "payment_method": "card", "payment_amount": 19.99,
                   "transaction_id": "TEST_TXN_001"}
        url = f"/api/vending/session/{sid}/confirm-payment"
        r = await http.post(url, json=confirm)  # nobody has ordered yet
        assert r.status_code == 409
        assert r.json() == {"detail": "Session not ready for payment confirmation"}

        # the phone (a legacy page: no token, extra fields) scans, designs, orders
        r = await http.post(f"/api/vending/session/{sid}/register-user", json={
            "machine_id": "TEST_VM_001", "session_id": sid, "ip_address": "10.0.0.1",
            "user_agent": "Mozilla/5.0", "qr_data": "x"})
        assert r.status_code == 200, r.text
        r = await http.post(f"/api/vending/session/{sid}/order-summary", json={
            "session_id": sid, "order_data": ORDER_DATA, "payment_amount": 19.99,
            "currency": "GBP"})
        assert r.status_code == 200, r.text

        r = await http.post(url, json=confirm)
        assert r.status_code == 200, r.text
        assert r.json() == {"success": True, "message": "Payment confirmed successfully",
                            "session_id": sid, "transaction_id": "TEST_TXN_001",
                            "status": "payment_completed",
                            "next_steps": "Order will be sent for printing"}
        st = (await http.get(f"/api/vending/session/{sid}/status")).json()
        assert st["status"] == "payment_completed" and st["payment_amount"] == 19.99
        r = await http.get("/api/chinese/test-connection")
        assert r.json()["auth_mode"] == "open" and r.json()["store"] == open_hub.backend


async def test_happy_path_keys_mode_with_live_sockets(keys_hub: HubServer) -> None:
    """create → register → progress ×3 → order → confirm, heard live by machine and phone."""
    key = keys_hub.add_machine("VM_FLOW_01", "--name", "Mall Kiosk 1", "--location",
                               "Westfield Mall - Level 2")
    async with Api(keys_hub) as api:
        r = await api.create("VM_FLOW_01", key, location="Mall Level 2",
                             metadata={"mall_name": "Westfield", "floor": 2})
        assert r.status_code == 200, r.text
        sid = r.json()["session_id"]
        assert r.json()["machine_info"] == {"id": "VM_FLOW_01", "name": "Mall Kiosk 1",
                                            "location": "Westfield Mall - Level 2"}
        machine = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
        snap = await recv_json(machine)
        wide = await connect(keys_hub, "/api/vending/machine/VM_FLOW_01/ws", key)
        assert snap["type"] == "snapshot" and snap["seq"] == 1
        assert snap["session"]["status"] == "active"
        assert snap["presence"] == {"machine": False, "phone": False}
        wide_snap = await recv_json(wide)
        assert [s["session_id"] for s in wide_snap["sessions"]] == [sid]

        r = await api.register(sid, "VM_FLOW_01", user_agent="Mozilla/5.0")
        assert r.status_code == 200, r.text
        reg = r.json()
        token = reg["phone_token"]
        assert reg["user_progress"] == "qr_scanned"
        phone = await connect(keys_hub, f"/api/vending/session/{sid}/ws", token)
        psnap = await recv_json(phone)
        assert psnap["seq"] == 2 and psnap["presence"]["machine"] is True

        for step in ("brand_selected", "design_complete", "payment_reached"):
            r = await api.progress(sid, token, step)
            assert r.status_code == 200 and r.json()["user_progress"] == step
        r = await api.order(sid, token)
        assert r.status_code == 200, r.text
        order_id = r.json()["order_id"]
        assert r.json()["payment_amount"] == 19.99 and r.json()["status"] == "payment_pending"
        r = await api.confirm(sid, key, "TXN_20250123_143500_001")
        assert r.status_code == 200, r.text

        seen = await recv_until(machine, "payment.completed")
        assert [f["event"] for f in seen] == FLOW[1:]
        assert [f["seq"] for f in seen] == list(range(2, 8))
        order_ev = seen[4]
        assert order_ev["data"]["order_id"] == order_id
        assert order_ev["data"]["payment_amount"] == 19.99
        assert "designImage" not in order_ev["data"]["order_data"]
        assert order_ev["data"]["order_data"]["design_image_url"] == \
            f"/api/vending/session/{sid}/design-image"
        paid = seen[-1]
        assert paid["status"] == "payment_completed"
        assert paid["data"]["transaction_id"] == "TXN_20250123_143500_001"
        assert await close_code(machine) == 1000

        pseen = await recv_until(phone, "payment.completed")
        assert [f["event"] for f in pseen] == FLOW[2:]
        assert await close_code(phone) == 1000

        wseen = await recv_until(wide, "payment.completed")
        assert [f["event"] for f in wseen] == FLOW[1:]
        await wide.close()

        img = await api.http.get(api.path(sid, "/design-image"), headers=auth(key))
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.content.startswith(b"\x89PNG")
        info = (await api.http.get(api.path(sid, "/order-info"), headers=auth(key))).json()
        assert info["order_summary"]["model"] == "iPhone 15 Pro"
        assert "designImage" not in info["order_summary"]
        st = (await api.status(sid, key)).json()
        assert st["status"] == "payment_completed" and st["seq"] == 7
        assert st["transaction_id"] == "TXN_20250123_143500_001"
        assert st["payment_method"] == "card" and st["currency"] == "GBP"


async def test_socket_ops_ack_like_rest(keys_hub: HubServer) -> None:
    """Socket ops answer with the REST code and body; the ack comes before the close."""
    key = keys_hub.add_machine("VM_OPS_01")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_OPS_01", key)
        token = (await api.register(sid, "VM_OPS_01")).json()["phone_token"]
        phone = await connect(keys_hub, f"/api/vending/session/{sid}/ws", token)
        await recv_json(phone)
        await phone.send('{"op":"progress","id":1,"user_progress":"brand_selected"}')
        await phone.send('{"op":"progress","id":2,"user_progress":"payment_pending"}')
        await phone.send('{"op":"ping"}')
        frames = [await recv_json(phone) for _ in range(4)]
        acks = {f["id"]: f for f in frames if f["type"] == "ack"}
        assert acks[1]["code"] == 200 and acks[1]["body"]["user_progress"] == "brand_selected"
        assert acks[2] == {"type": "ack", "id": 2, "code": 422,
                           "body": {"detail": "Invalid user_progress"}}
        assert {"type": "pong"} in frames
        machine = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
        await recv_json(machine)
        await machine.send('{"op":"cancel","id":"c1"}')
        got = []
        code = None
        try:
            while True:
                got.append(await recv_json(machine))
        except Exception as exc:  # noqa: BLE001 - closed: read its code
            code = getattr(getattr(exc, "rcvd", None), "code", None)
        types = [(f["type"], f.get("event")) for f in got]
        assert ("ack", None) in types and ("event", "session.cancelled") in types
        assert code == 1000
        await asyncio.wait_for(phone.recv(), 5)
