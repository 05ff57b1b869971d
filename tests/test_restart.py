"""Durability: a killed hub restarted on the same HUB_DB has every session and event."""

from __future__ import annotations

import signal

from .api import ORDER_DATA, Api, auth, close_code, connect, recv_json
from .server import HubServer


async def _history(server: HubServer, sid: str, key: str) -> list[dict]:
    ws = await connect(server, f"/api/vending/session/{sid}/ws", key, since=0)
    frames = []
    while True:
        frame = await recv_json(ws)
        frames.append(frame)
        if frame["seq"] == 7:
            break
    assert await close_code(ws) == 1000
    return frames


async def test_kill_and_restart_keeps_sessions_and_events(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    server: HubServer = fresh_hub()
    key = server.add_machine("VM_DURABLE")
    async with Api(server) as api:
        paid, _ = await api.to_pending("VM_DURABLE", key)
        assert (await api.confirm(paid, key, "TXN_DURABLE")).status_code == 200
        pending, token = await api.to_pending("VM_DURABLE", key)
        before = {sid: (await api.status(sid, key)).json() for sid in (paid, pending)}
        history = await _history(server, paid, key)
    server.stop(signal.SIGKILL)
    server.start()
    async with Api(server) as api:
        for sid, body in before.items():
            assert (await api.status(sid, key)).json() == body
        assert await _history(server, paid, key) == history
        # the live session goes on where it was: same token, same order, next seq
        r = await api.confirm(pending, key, "TXN_DURABLE_2")
        assert r.status_code == 200
        st = (await api.status(pending, key)).json()
        assert st["seq"] == 7 and st["status"] == "payment_completed"
        r = await api.confirm(paid, key, "TXN_DURABLE")  # still idempotent after restart
        assert r.status_code == 200
        img = await api.http.get(api.path(pending, "/design-image"),
                                 headers={"Authorization": f"Bearer {key}"})
        assert img.status_code == 200 and img.content.startswith(b"\x89PNG")
        assert token.startswith("pt_")


async def test_sigterm_closes_sockets_with_1012(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    server: HubServer = fresh_hub()
    key = server.add_machine("VM_RESTART")
    async with Api(server) as api:
        sid = await api.new_session("VM_RESTART", key)
    ws = await connect(server, f"/api/vending/session/{sid}/ws", key)
    await recv_json(ws)
    server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert await close_code(ws, timeout=10) == 1012
    # uvicorn re-raises the signal after its graceful shutdown: exit by SIGTERM, not a crash
    assert server.proc.wait(10) in (0, -signal.SIGTERM)  # type: ignore[union-attr]
    assert "Traceback" not in server.log.read_text()  # type: ignore[union-attr]


async def test_an_order_without_image_clears_the_last_one_across_a_restart(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    """A replacement order with no ``designImage`` leaves no design image behind: in the
    process that stored the image, and in a new process on the same file (which cannot
    know which sessions have one)."""
    server: HubServer = fresh_hub()
    key = server.add_machine("VM_IMAGES")
    bare = {k: v for k, v in ORDER_DATA.items() if k != "designImage"}

    async def image_status(api: Api, sid: str) -> int:
        r = await api.http.get(api.path(sid, "/design-image"), headers=auth(key))
        return r.status_code

    async with Api(server) as api:
        first, token1 = await api.to_pending("VM_IMAGES", key)  # with an image
        second, token2 = await api.to_pending("VM_IMAGES", key)
        assert await image_status(api, first) == 200
        assert (await api.order(first, token1, order_data=bare)).status_code == 200
        assert await image_status(api, first) == 404
        assert (await api.order(first, token1)).status_code == 200  # an image again
        assert await image_status(api, first) == 200
    server.stop(signal.SIGKILL)
    server.start()
    async with Api(server) as api:
        assert await image_status(api, second) == 200
        assert (await api.order(second, token2, order_data=bare)).status_code == 200
        assert await image_status(api, second) == 404
        assert (await api.order(second, token2, order_data=bare)).status_code == 200
        assert await image_status(api, second) == 404
