"""Credentials, the order of checks, rate limits and body limits (CONTRACT §1)."""

from __future__ import annotations

import asyncio

import httpx

from .api import Api, auth
from .server import HubServer


async def test_order_of_checks(keys_hub: HubServer) -> None:
    """credential 401 → id format 400 → existence 404 → ownership 403 → body 422 → state."""
    key = keys_hub.add_machine("VM_AUTH_1")
    other = keys_hub.add_machine("VM_AUTH_2")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_AUTH_1", key)
        bad_id, unknown = "VM_AUTH_1_2025XX01_000000_ABCDEF", "VM_AUTH_1_20250101_000000_ABCDEF"
        cases = [
            (None, bad_id, 401, "Not authenticated"),
            ("mk_nope", bad_id, 401, "Not authenticated"),
            ("Basic dXNlcjpwYXNz", sid, 401, "Not authenticated"),
            (key, bad_id, 400, "Invalid session ID format"),
            (key, unknown, 404, "Session not found"),
            (other, sid, 403, "Forbidden"),
            ("app-secret-key", sid, 403, "Forbidden"),
        ]
        for token, target, code, detail in cases:
            r = await api.http.post(api.path(target, "/confirm-payment"),
                                    headers={"Authorization": token} if token and " " in token
                                    else auth(token), content=b"{not json")
            assert (r.status_code, r.json()) == (code, {"detail": detail}), (token, target)
        r = await api.http.post(api.path(sid, "/confirm-payment"), headers=auth(key),
                                content=b"{not json")
        assert r.status_code == 422 and "detail" in r.json()
        r = await api.confirm(sid, key, "T1")
        assert r.status_code == 409
        # a phone token of another session: 403; a machine key on a phone route: 403
        sid2 = await api.new_session("VM_AUTH_1", key)
        token2 = (await api.register(sid2, "VM_AUTH_1")).json()["phone_token"]
        assert (await api.progress(sid, token2, "brand_selected")).status_code == 403
        assert (await api.progress(sid2, key, "brand_selected")).status_code == 403
        assert (await api.status(sid2, token2)).status_code == 200
        # create-session for another machine's id
        r = await api.create("VM_AUTH_2", key)
        assert (r.status_code, r.json()) == (403, {"detail": "Forbidden"})
        r = await api.create("bad id!", key)
        assert (r.status_code, r.json()) == (400, {"detail": "Invalid machine ID format"})


async def test_register_binds_first_phone(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_AUTH_3")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_AUTH_3", key)
        r = await api.register(sid, "VM_AUTH_3")
        token = r.json()["phone_token"]
        await api.progress(sid, token, "design_complete")
        again = await api.register(sid, "VM_AUTH_3", token)
        assert again.status_code == 200 and again.json()["phone_token"] == token
        assert again.json()["user_progress"] == "design_complete"  # nothing rewinds
        r = await api.register(sid, "VM_AUTH_3")
        assert (r.status_code, r.json()) == (409, {"detail": "Session already claimed"})
        r = await api.register(sid, "VM_OTHER", token)
        assert (r.status_code, r.json()) == (400, {"detail": "Machine ID mismatch"})


async def test_open_mode_reregister_without_token(open_hub: HubServer) -> None:
    async with Api(open_hub) as api:
        sid = await api.new_session("VM_OPEN_1")
        first = (await api.register(sid, "VM_OPEN_1")).json()
        await api.progress(sid, None, "brand_selected")
        again = await api.register(sid, "VM_OPEN_1")
        assert again.status_code == 200
        assert again.json()["phone_token"] == first["phone_token"]
        assert again.json()["user_progress"] == "brand_selected"
        # phone prices are trusted in open mode
        r = await api.order(sid, None, amount="24.50")
        assert r.status_code == 200 and r.json()["payment_amount"] == 24.5
        assert '"payment_amount":24.50' in r.text


async def test_keys_mode_price_comes_from_price_list(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_AUTH_4")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_AUTH_4", key)
        token = (await api.register(sid, "VM_AUTH_4")).json()["phone_token"]
        r = await api.order(sid, token, amount=1.00)
        assert (r.status_code, r.json()) == (409, {"detail": "Payment amount does not match price"})
        r = await api.order(sid, token, amount="19.99")
        assert r.status_code == 200 and r.json()["payment_amount"] == 19.99


async def test_rate_limits(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    server: HubServer = fresh_hub(HUB_CREATE_RATE="10", HUB_AUTH_FAIL_RATE="20")
    key = server.add_machine("VM_RATE")
    async with Api(server) as api:
        codes = [(await api.create("VM_RATE", key)).status_code for _ in range(11)]
        assert codes == [200] * 10 + [429]
        r = await api.create("VM_RATE", key)
        assert r.json() == {"detail": "Rate limit exceeded"}
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        codes = [(await api.status("VM_RATE_20250101_000000_ABCDEF", "mk_bad")).status_code
                 for _ in range(21)]
        assert codes == [401] * 20 + [429]
        # over the limit the address is refused until the window ends, good key or not:
        # guessing must not go on at full speed behind one valid key
        r = await api.status("VM_RATE_20250101_000000_ABCDEF", key)
        assert r.status_code == 429 and "Retry-After" in r.headers


async def test_body_limits(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_AUTH_5")
    async with Api(keys_hub) as api:
        big = b'{"machine_id":"VM_AUTH_5","pad":"' + b"x" * 17_000 + b'"}'
        r = await api.http.post("/api/vending/create-session", content=big, headers=auth(key))
        assert (r.status_code, r.json()) == (413, {"detail": "Request body too large"})

        async def chunks():  # no Content-Length: counted as it streams
            yield b'{"machine_id":"VM_AUTH_5","pad":"'
            for _ in range(20):
                yield b"x" * 1000
            yield b'"}'

        r = await api.http.post("/api/vending/create-session", content=chunks(),
                                headers=auth(key))
        assert (r.status_code, r.json()) == (413, {"detail": "Request body too large"})
        sid = await api.new_session("VM_AUTH_5", key)
        token = (await api.register(sid, "VM_AUTH_5")).json()["phone_token"]
        image = "data:image/png;base64," + "A" * 600_000  # 0.6 MB is fine for an order
        r = await api.order(sid, token, order_data={"brand": "x", "designImage": image})
        assert r.status_code == 200, r.text
        # over 1 MiB: answered from the headers alone, before any of the body is sent
        reader, writer = await asyncio.open_connection("127.0.0.1", keys_hub.port)
        writer.write(f"POST {api.path(sid, '/order-summary')} HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1100000\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        assert body == b'{"detail":"Request body too large"}'
        writer.close()
        assert (await api.status(sid, token)).json()["seq"] == 3


def test_unknown_routes_and_methods_have_detail(keys_hub: HubServer) -> None:
    r = httpx.get(keys_hub.url + "/api/vending/nothing-here")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = httpx.get(keys_hub.url + "/api/vending/session/VM_1_20250101_000000_ABCDEF")
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}
    r = httpx.get(keys_hub.url + "/ready")
    assert r.status_code == 200 and r.json()["store"] == keys_hub.backend
    assert r.json()["broker"] == {"sqlite": "local", "redis": "redis"}[keys_hub.backend]


async def test_amount_strings_are_plain_decimals(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_AUTH_6")
    async with Api(keys_hub) as api:
        sid, _ = await api.to_pending("VM_AUTH_6", key)
        for bad in ["\u0663", "+19.99", "1_9.99", " 19.99", "1e1", "19.999", "19,99", ""]:
            r = await api.confirm(sid, key, "TXN_STR", amount=bad)
            assert r.status_code == 422, bad
            assert r.json()["detail"].startswith("Invalid payment_amount"), bad
        assert (await api.status(sid, key)).json()["status"] == "payment_pending"
        r = await api.confirm(sid, key, "TXN_STR", amount="19.99")
        assert r.status_code == 200


async def test_client_leaving_mid_body_is_not_an_error(keys_hub: HubServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", keys_hub.port)
    writer.write(b"POST /api/vending/create-session HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 100\r\n\r\n{\"machine_id\"")
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.3)
    assert "ClientDisconnect" not in (keys_hub.log.read_text() if keys_hub.log else "")


async def test_cors_origins_apply_to_every_route(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With HUB_CORS_ORIGINS the session commands leave the direct dispatch
    (hub.http.direct) so that CORS sees them: preflights and answers carry the headers,
    for the allowed origin only; without it, no CORS header at all."""
    origin = "https://shop.example"
    cors = HubServer(tmp_path / "cors.db", {"HUB_CORS_ORIGINS": origin}, open_mode=True).start()
    plain = HubServer(tmp_path / "plain.db", {}, open_mode=True).start()
    try:
        for server, allowed in ((cors, True), (plain, False)):
            async with Api(server) as api:
                sid = await api.new_session("VM_CORS", None)
                pre = await api.http.options(api.path(sid, "/progress"), headers={
                    "Origin": origin, "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type"})
                got = await api.http.get(api.path(sid, "/status"), headers={"Origin": origin})
                evil = await api.http.get(api.path(sid, "/status"),
                                          headers={"Origin": "https://evil.example"})
                assert got.status_code == 200 and evil.status_code == 200
                assert "access-control-allow-origin" not in evil.headers
                refused = await api.http.options(api.path(sid, "/progress"), headers={
                    "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
                if allowed:
                    assert refused.status_code == 400  # CONTRACT §1's body, not plain text
                    assert refused.json() == {"detail": "Disallowed CORS origin"}
                    assert pre.status_code == 200
                    assert pre.headers["access-control-allow-origin"] == origin
                    assert got.headers["access-control-allow-origin"] == origin
                else:
                    assert pre.status_code == 405
                    assert "access-control-allow-origin" not in got.headers
    finally:
        cors.stop()
        plain.stop()



async def test_command_body_limits_by_header_and_as_it_streams(keys_hub: HubServer) -> None:
    """The session commands enforce CONTRACT §1's 16 KiB themselves (they are served
    without the middleware stack): by Content-Length, and counted as a body streams."""
    key = keys_hub.add_machine("VM_AUTH_7")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_AUTH_7", key)
        token = (await api.register(sid, "VM_AUTH_7")).json()["phone_token"]
        big = b'{"user_progress":"brand_selected","pad":"' + b"x" * 17_000 + b'"}'
        r = await api.http.post(api.path(sid, "/progress"), content=big, headers=auth(token))
        assert (r.status_code, r.json()) == (413, {"detail": "Request body too large"})
        assert r.headers.get("connection") == "close"  # the body was not read

        async def chunks():  # no Content-Length
            yield b'{"user_progress":"brand_selected","pad":"'
            for _ in range(20):
                yield b"x" * 1000
            yield b'"}'

        r = await api.http.post(api.path(sid, "/progress"), content=chunks(),
                                headers=auth(token))
        assert (r.status_code, r.json()) == (413, {"detail": "Request body too large"})
        st = (await api.status(sid, key)).json()
        assert st["user_progress"] == "qr_scanned" and st["seq"] == 2  # nothing applied


async def test_trusted_proxy_failures_count_per_forwarded_address(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    """Behind a trusted proxy the rate limit of failed credentials (CONTRACT §1) counts
    the client named by X-Forwarded-For, not the proxy: one client locked out leaves the
    others alone."""
    server: HubServer = fresh_hub(HUB_AUTH_FAIL_RATE="5", HUB_TRUSTED_PROXIES="127.0.0.1")
    key = server.add_machine("VM_PROXY")
    sid = "VM_PROXY_20250101_000000_ABCDEF"
    async with Api(server) as api:
        bad = {"Authorization": "Bearer mk_bad", "X-Forwarded-For": "203.0.113.7"}
        codes = [(await api.http.get(api.path(sid, "/status"), headers=bad)).status_code
                 for _ in range(6)]
        assert codes == [401] * 5 + [429]
        other = {"Authorization": f"Bearer {key}", "X-Forwarded-For": "198.51.100.9"}
        r = await api.http.get(api.path(sid, "/status"), headers=other)
        assert r.status_code == 404  # checked (no such session), not rate-limited
        # the proxy's own entry after the client's is skipped: still the locked-out client
        chain = {**bad, "X-Forwarded-For": "203.0.113.7, 127.0.0.1"}
        r = await api.http.get(api.path(sid, "/status"), headers=chain)
        assert r.status_code == 429


async def test_content_length_of_any_size(keys_hub: HubServer) -> None:
    """A Content-Length of thousands of digits is a length like any other (leading zeros
    allowed; past every limit: 413 before the body is read), never a 500."""
    key = keys_hub.add_machine("VM_AUTH_8")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_AUTH_8", key)
        token = (await api.register(sid, "VM_AUTH_8")).json()["phone_token"]

    async def raw(path: str, length: str, body: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", keys_hub.port)
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
                     .encode() + body)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        return head

    for path in (f"/api/vending/session/{sid}/progress", "/api/vending/create-session"):
        head = await raw(path, "0" * 5000 + "5", b'{"a":')
        assert head.startswith(b"HTTP/1.1 4") and b"application/json" in head, head
        head = await raw(path, "0" * 5000 + "99999999", b"")  # 100 MB: past every limit
        assert head.startswith(b"HTTP/1.1 413"), head


async def test_repeated_headers_count_once_the_first_as_on_sockets(keys_hub: HubServer) -> None:
    """A repeated Authorization header: the first one counts, on REST as on sockets."""
    key = keys_hub.add_machine("VM_AUTH_9")
    async with Api(keys_hub) as api:
        sid = await api.new_session("VM_AUTH_9", key)
        good_first = [("Authorization", f"Bearer {key}"), ("Authorization", "Bearer mk_bad")]
        r = await api.http.get(api.path(sid, "/status"), headers=good_first)
        assert r.status_code == 200, r.text
        bad_first = [("Authorization", "Bearer mk_bad"), ("Authorization", f"Bearer {key}")]
        r = await api.http.get(api.path(sid, "/status"), headers=bad_first)
        assert r.status_code == 401
