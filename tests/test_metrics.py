"""``GET /metrics`` (CONTRACT §3): Prometheus text that counts what the hub did."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from .api import Api, close_code, connect, recv_json
from .server import HubServer


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_events_sockets_refusals_and_closes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = HubServer(tmp_path / "hub.db", open_mode=True).start()
    try:
        async with Api(server) as api:
            before = samples((await api.http.get("/metrics")).text)
            assert ("hub_sockets", (("role", "machine"),)) not in before
            sid = await api.new_session("VM_MET", None)
            ws = await connect(server, f"/api/vending/session/{sid}/ws")
            await recv_json(ws)
            token = (await api.register(sid, "VM_MET")).json()["phone_token"]
            await api.progress(sid, token, "brand_selected")
            missing = "VM_MET_20250101_000000_ABCDEFGH"
            assert (await api.status(missing, None)).status_code == 404
            r = await api.http.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            now = samples(r.text)
            assert now[("hub_sockets", (("role", "machine"),))] == 1
            for event in ("session.created", "phone.registered", "progress"):
                assert now[("hub_events_total", (("event", event),))] >= 1, event
            assert now[("hub_refusals_total", (("status", "404"),))] >= 1
            assert now[("hub_commit_seconds_count", ())] >= 2
            assert ("process_cpu_seconds_total", ()) in now  # prometheus_client's own
            assert (await api.cancel(sid, None)).status_code == 200
            assert await close_code(ws) == 1000
            await asyncio.sleep(0.2)
            after = samples((await api.http.get("/metrics")).text)
            assert after[("hub_sockets", (("role", "machine"),))] == 0
            assert after[("hub_socket_closes_total", (("code", "1000"),))] >= 1
    finally:
        server.stop()
