"""Fuzzing every REST route with malformed input (CONTRACT §1, §3).

Hypothesis throws malformed session ids, arbitrary and wrongly typed bodies, bad amounts,
bad credentials, bad ``?scale=`` values and oversize bodies at a real ``hub serve`` (both
``keys`` and ``open`` mode). Every such request must be refused with a 4xx and a JSON
``{"detail": "<text>"}`` (never a 5xx), must leave every known session exactly as it was
(the ``status`` body, ``seq`` included, is compared before and after each example), and
must not make the server log a traceback. Unknown extra fields, which legacy clients send
(``ip_address``, ``user_agent``, ``qr_data``), are ignored, not refused.

The tests use a sync ``httpx.Client`` inside ``@given`` (hypothesis and async do not mix
well); the sessions are built once per module with :class:`tests.api.Api`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from .api import ORDER_DATA, Api
from .server import HubServer

MID = "FUZZ_VM"
OTHER_MID = "FUZZ_VM_OTHER"
APP_KEY = "app-secret-key"
PRICE = Decimal("19.99")
BODY_LIMIT = 16 * 1024
ORDER_LIMIT = 1024 * 1024
TOO_LARGE = {"detail": "Request body too large"}

PHONE_PROGRESS = ("started", "qr_scanned", "brand_selected", "design_complete",
                  "payment_reached")
PAYMENT_METHODS = ("card", "cash", "contactless", "mobile")
ORDER_STRING_FIELDS = ("brand", "model", "color", "inputText", "selectedFont",
                       "selectedTextColor")
#: every field name a request body of CONTRACT §3 knows; random keys avoid them
KNOWN_FIELDS = frozenset({
    "machine_id", "location", "session_timeout_minutes", "metadata", "session_id",
    "user_agent", "user_progress", "order_data", "payment_amount", "currency",
    "payment_method", "transaction_id", "payment_data",
})
ORDER_DATA_FIELDS = frozenset({*ORDER_STRING_FIELDS, "template", "designImage"})
LEGACY_EXTRAS = ("ip_address", "user_agent", "qr_data")

#: no "explain" phase: it traces every line and is far too slow against a live server
FUZZ = settings(deadline=None, max_examples=50, print_blob=True,
                phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target,
                        Phase.shrink),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------
# JSON bodies with number tokens written as they are (1e400, 19.990) and non-JSON (NaN)
# ---------------------------------------------------------------------------------------
class Raw(str):
    """JSON text put into a body verbatim: ``Raw("NaN")``, ``Raw("1e400")``."""

    def __repr__(self) -> str:
        text = str(self)
        if len(text) > 80:
            return f"Raw({text[:24]!r} … {text[-12:]!r}, {len(text)} chars)"
        return f"Raw({text!r})"


def enc(value: Any) -> str:
    """JSON text of ``value`` (UTF-8 strings, not escaped), with :class:`Raw` verbatim."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + enc(v)
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(enc(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


def body_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else enc(value).encode()


def amount_number(value: Any) -> Decimal | None:
    """The finite number ``value`` could stand for as an amount (a JSON number or a
    decimal string, read generously), or None. Used to keep acceptable amounts out of
    the "bad amount" examples."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (int, str)):
        text = str(value)
    else:
        return None
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def acceptable_amount(value: Any) -> bool:
    """True when the hub could take ``value`` as some amount (0.01..10000.00, 2 places)."""
    d = amount_number(value)
    return (d is not None and Decimal("0.01") <= d <= Decimal("10000.00")
            and d == d.quantize(Decimal("0.01")))


# ---------------------------------------------------------------------------------------
# session ids
# ---------------------------------------------------------------------------------------
_WELL_FORMED = re.compile(
    r"[A-Za-z0-9_-]{1,50}_(?P<date>[0-9]{8})_(?P<time>[0-9]{6})_[A-Za-z0-9]{6,16}")


def well_formed(sid: str) -> bool:
    """CONTRACT §1's session id: ``{MACHINE_ID}_{YYYYMMDD}_{HHMMSS}_{RANDOM}``, a real
    UTC date and time, RANDOM 6..16 ``A-Za-z0-9`` (ASCII only)."""
    m = _WELL_FORMED.fullmatch(sid)
    if m is None:
        return False
    try:
        datetime.strptime(m["date"] + m["time"], "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def spath(sid: str, tail: str = "") -> str:
    """The REST path of a session route, every character of ``sid`` percent-encoded."""
    return f"/api/vending/session/{quote(sid, safe='')}{tail}"


# ---------------------------------------------------------------------------------------
# a real hub, a few sessions in known states, and a client that survives a 5xx
# ---------------------------------------------------------------------------------------
class Http:
    """A sync client; after a 5xx it starts a new connection (the server drops the old
    one after an unhandled error, which would otherwise break the next example)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=15)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                content: bytes | Iterator[bytes] | None = None,
                params: dict[str, str] | None = None) -> httpx.Response:
        r = self.client.request(method, path, headers=headers, content=content,
                                params=params)
        if r.status_code >= 500:
            self.client.close()
            self.client = httpx.Client(base_url=self.base_url, timeout=15)
        return r

    def close(self) -> None:
        self.client.close()


@dataclass
class Known:
    """A session in a known state: its id, its phone token (if bound), and the
    credential that reads its status (its machine's key; None in open mode)."""

    sid: str
    token: str | None
    reader: str | None


class World:
    """One hub with a few sessions in known states, and a client for it. ``snap`` holds
    the known sessions' status bodies as last seen."""

    def __init__(self, server: HubServer, open_mode: bool, key: str | None,
                 other_key: str | None, sessions: dict[str, Known]) -> None:
        self.server, self.open_mode = server, open_mode
        self.key = key  # FUZZ_VM's machine key (None in open mode)
        self.other_key = other_key  # FUZZ_VM_OTHER's machine key (keys mode)
        self.sessions = sessions
        self.http = Http(server.url)
        self.log_start = log_size(server)
        self.snap: dict[str, Any] = {}
        self.counter = 0

    def __repr__(self) -> str:
        return f"World({'open' if self.open_mode else 'keys'} hub at {self.server.url})"

    def s(self, name: str) -> Known:
        return self.sessions[name]

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"


def auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def log_size(server: HubServer) -> int:
    assert server.log is not None
    return server.log.stat().st_size if server.log.exists() else 0


def tracebacks_since(server: HubServer, mark: int) -> str:
    """Server log text written since ``mark`` if it holds a traceback, else ""."""
    assert server.log is not None
    with open(server.log, "rb") as f:
        f.seek(mark)
        text = f.read().decode(errors="replace")
    return text if "Traceback" in text else ""


async def _build(server: HubServer, key: str | None, other_key: str | None
                 ) -> dict[str, Known]:
    async with Api(server) as api:
        active = await api.new_session(MID, key)
        designing = await api.new_session(MID, key)
        r = await api.register(designing, MID)
        assert r.status_code == 200, r.text
        designing_token = r.json()["phone_token"]
        pending, pending_token = await api.to_pending(MID, key)
        paid, paid_token = await api.to_pending(MID, key)
        r = await api.confirm(paid, key, "fuzz-paid-txn")
        assert r.status_code == 200, r.text
        cancelled = await api.new_session(MID, key)
        r = await api.cancel(cancelled, key)
        assert r.status_code == 200, r.text
        sessions = {
            "active": Known(active, None, key),
            "designing": Known(designing, designing_token, key),
            "pending": Known(pending, pending_token, key),
            "paid": Known(paid, paid_token, key),
            "cancelled": Known(cancelled, None, key),
        }
        if other_key is not None:
            other = await api.new_session(OTHER_MID, other_key)
            r = await api.register(other, OTHER_MID)
            assert r.status_code == 200, r.text
            sessions["other"] = Known(other, r.json()["phone_token"], other_key)
        return sessions


def make_world(server: HubServer, open_mode: bool) -> Iterator[World]:
    key = other_key = None
    if not open_mode:
        key = server.add_machine(MID)
        other_key = server.add_machine(OTHER_MID)
    loop = asyncio.new_event_loop()
    try:
        sessions = loop.run_until_complete(_build(server, key, other_key))
    finally:
        loop.close()
    w = World(server, open_mode, key, other_key, sessions)
    w.snap = snapshot(w)
    assert w.snap["pending"]["status"] == "payment_pending"
    assert w.snap["paid"]["status"] == "payment_completed"
    assert w.snap["cancelled"]["status"] == "cancelled"
    yield w
    w.http.close()


@pytest.fixture(scope="module")
def keys_world(keys_hub: HubServer) -> Iterator[World]:
    yield from make_world(keys_hub, open_mode=False)


@pytest.fixture(scope="module")
def open_world(open_hub: HubServer) -> Iterator[World]:
    yield from make_world(open_hub, open_mode=True)


@pytest.fixture(params=["keys", "open"])
def world(request: pytest.FixtureRequest, backend: dict[str, str]) -> World:
    """The keys-mode or the open-mode world (on the backend of the run)."""
    return request.getfixturevalue(f"{request.param}_world")  # type: ignore[no-any-return]


def snapshot(w: World) -> dict[str, Any]:
    """The ``status`` body (``seq`` included) of every known session."""
    out: dict[str, Any] = {}
    for name, k in w.sessions.items():
        r = w.http.request("GET", spath(k.sid, "/status"), headers=auth(k.reader))
        assert r.status_code == 200, f"status of {name}: {r.status_code} {r.text}"
        out[name] = r.json()
    return out


def describe(r: httpx.Response) -> str:
    return f"{r.request.method} {r.request.url} -> {r.status_code} {r.text[:300]!r}"


def assert_refused(r: httpx.Response, codes: tuple[int, ...] | None = None,
                   detail: str | None = None) -> str:
    """A 4xx (one of ``codes`` when given) with a JSON ``{"detail": "<text>"}``."""
    assert 400 <= r.status_code < 500, describe(r)
    if codes is not None:
        assert r.status_code in codes, describe(r)
    assert r.headers.get("content-type", "").startswith("application/json"), describe(r)
    body = r.json()
    assert isinstance(body, dict), describe(r)
    text = body.get("detail")
    assert isinstance(text, str) and text, describe(r)
    assert "Traceback" not in text and "Internal" not in text, describe(r)
    if detail is not None:
        assert text == detail, describe(r)
    return text


def assert_unchanged(w: World, mark: int) -> None:
    """Every known session is as it was before the example, and no traceback was logged."""
    after = snapshot(w)
    before, w.snap = w.snap, after
    for name in before:
        assert after[name] == before[name], (
            f"session {name!r} changed:\nbefore {before[name]}\nafter  {after[name]}")
    logged = tracebacks_since(w.server, mark)
    assert not logged, f"server logged a traceback:\n{logged[-3000:]}"


def fresh_designing(w: World) -> tuple[str, str | None]:
    """A new FUZZ_VM session with a phone bound: (id, phone token; None in open mode)."""
    r = w.http.request("POST", "/api/vending/create-session", headers=auth(w.key),
                       content=body_bytes({"machine_id": MID}))
    assert r.status_code == 200, describe(r)
    sid = r.json()["session_id"]
    r = w.http.request("POST", spath(sid, "/register-user"),
                       content=body_bytes({"machine_id": MID, "session_id": sid}))
    assert r.status_code == 200, describe(r)
    return sid, None if w.open_mode else r.json()["phone_token"]


def fresh_pending(w: World) -> tuple[str, str | None]:
    """A new FUZZ_VM session at ``payment_pending`` (19.99 GBP): (id, phone token)."""
    sid, token = fresh_designing(w)
    r = w.http.request("POST", spath(sid, "/order-summary"), headers=auth(token),
                       content=body_bytes({"order_data": ORDER_DATA}))
    assert r.status_code == 200, describe(r)
    return sid, token


def status_of(w: World, sid: str) -> dict[str, Any]:
    r = w.http.request("GET", spath(sid, "/status"), headers=auth(w.key))
    assert r.status_code == 200, describe(r)
    return r.json()  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------
def json_values(int_bits: int) -> st.SearchStrategy[Any]:
    """Any JSON value (small), integers within ``±2**int_bits``."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**int_bits, 2**int_bits),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=20))
    return st.recursive(
        scalars,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                  max_size=4),
        max_leaves=12)


JSON_VALUES = json_values(70)
#: what RFC 8259 §6 calls interoperable: integers within ±2**53
SAFE_JSON_VALUES = json_values(53)
#: JSON values by type; ``special`` are tokens that are not JSON at all
TYPED: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(-2**80, 2**80),
    "float": st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not f.is_integer()) | st.sampled_from([30.0, -0.0, 1e300]),
    "special": st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"),
                                Raw("1e400"), Raw("undefined"), Raw("'single'")]),
    "str": st.text(max_size=30),
    "list": st.lists(JSON_VALUES, max_size=3),
    "dict": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
}


def wrong_type(*allowed: str) -> st.SearchStrategy[Any]:
    """JSON values of any type but ``allowed`` (and the non-JSON tokens)."""
    return st.one_of(*(s for name, s in TYPED.items() if name not in allowed))


def unknown_keys() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(LEGACY_EXTRAS), st.text(min_size=1, max_size=16)
                     ).filter(lambda k: k not in KNOWN_FIELDS)


def junk_bodies() -> st.SearchStrategy[bytes]:
    """Bodies no route accepts: any JSON value whose keys are all unknown, text and bytes
    that are not JSON, and a few classics."""
    def no_known_keys(v: Any) -> bool:
        return not (isinstance(v, dict) and KNOWN_FIELDS & v.keys())

    return st.one_of(
        JSON_VALUES.filter(no_known_keys).map(body_bytes),
        st.dictionaries(unknown_keys(), JSON_VALUES, max_size=6).map(body_bytes),
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.sampled_from([
            b"", b"null", b"NaN", b"Infinity", b"1e400", b"{", b"}", b"{}", b"[]", b'""',
            b'{"a":1,}', b"{'a': 1}", b"\xef\xbb\xbf{}", b"\x00", b"\xff\xfe\xfd",
            b'{"machine_id": NaN}', b'{"payment_amount": 1e400}', b"[" * 50,
            b'{"user_progress":', b"true", b"-0", b'{"a":"\\ud800"}',
        ]),
    )


#: amounts, most of them bad; the tests filter out those a route could accept
AMOUNT_POOL: list[Any] = [
    Raw("NaN"), "NaN", Raw("Infinity"), Raw("-Infinity"), "Infinity", "-Infinity",
    Raw("1e400"), Raw("-1e400"), "1e400", Raw("1e-400"), -1, 0, 0.0, Raw("-0"), -0.01,
    0.001, 19.999, Raw("19.999"), "19.999", Raw("19.9900000000000000001"), 19.98, 20,
    10000.01, Raw("1e5"), "abc", "", " ", True, False, None, [], {}, [19.99],
    {"amount": 19.99}, "19,99", "£19.99", "19.99 GBP", "0x13", "9" * 5000,
    Raw("1" * 400), Raw("1999e-2"), Raw("19.990"), "19.99", 19.99,
]
AMOUNTS = st.one_of(
    st.sampled_from(AMOUNT_POOL),
    st.floats(),
    st.integers(-10**30, 10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(lambda d: Raw(str(d))),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text(max_size=20),
)


def amount_refused(value: Any, *, accepts_null: bool, price_only: bool) -> bool:
    """Must a route refuse ``value`` as ``payment_amount``? ``price_only``: the route takes
    only the price (19.99), so any other valid amount is refused too; else (``open``-mode
    order-summary, which trusts the phone's price) only invalid amounts are."""
    if value is None:
        return not accepts_null
    if price_only:
        return amount_number(value) != PRICE
    return not acceptable_amount(value)


def bad_amounts(*, accepts_null: bool, price_only: bool) -> st.SearchStrategy[Any]:
    return AMOUNTS.filter(lambda v: amount_refused(v, accepts_null=accepts_null,
                                                   price_only=price_only))


BAD_CURRENCY_FORMAT = st.one_of(
    wrong_type("str", "null"),
    st.sampled_from(["", "gbp", "Gbp", "GB", "GBPX", "£", "G B", " GBP", "GBP ", "123"]),
    st.text(max_size=5).filter(lambda s: re.fullmatch("[A-Z]{3}", s) is None))


def other_text(*taken: str, max_size: int = 60) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size).filter(lambda s: s not in taken)


def big_object(min_bytes: int = 4097) -> st.SearchStrategy[dict[str, str]]:
    """An object whose JSON form is over 4 KiB (and well under the 16 KiB body limit)."""
    return st.integers(min_bytes, 11_000).map(lambda n: {"blob": "x" * n})


def bad_order_data(optional: bool = False) -> st.SearchStrategy[Any]:
    """``order_data`` the hub must refuse: not an object (null is fine where the field is
    ``optional``), or an object with a known field ill-typed."""
    bad_image = st.one_of(
        wrong_type("str", "null"),
        st.sampled_from([
            "", "http://example.com/x.png", "data:text/plain;base64,AAAA",
            "data:image/png;base64,***", "data:image/png;base64,abc",
            "data:image/bmp;base64,AAAA", "data:image/png,AAAA", "DATA:image/png;base64,AAAA",
            "data:image/png;base64,AAAA=AAA", "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB",
        ]),
        st.text(max_size=40).filter(lambda s: not s.startswith("data:")))
    one_bad = st.one_of(
        st.tuples(st.sampled_from(ORDER_STRING_FIELDS), wrong_type("str", "null")),
        st.tuples(st.just("template"), st.one_of(
            wrong_type("dict", "null"),
            st.fixed_dictionaries({"id": wrong_type("str", "null"), "name": st.just("x")}),
            st.fixed_dictionaries({"id": st.just("x"), "name": wrong_type("str", "null")}))),
        st.tuples(st.just("designImage"), bad_image))
    return st.one_of(
        wrong_type("dict", "null") if optional else wrong_type("dict"),
        st.lists(one_bad, min_size=1, max_size=3).map(
            lambda changes: {**ORDER_DATA, **dict(changes)}))


@dataclass(frozen=True)
class Target:
    """A body route aimed at a known session (None: create-session) with a credential
    kind: ``machine`` (FUZZ_VM's key), ``phone`` (the session's own token), ``app``,
    ``none``."""

    route: str
    session: str | None
    cred: str


KEYS_TARGETS = [
    Target("create-session", None, "machine"),
    Target("register-user", "active", "none"),
    Target("register-user", "designing", "phone"),
    Target("progress", "designing", "phone"),
    Target("progress", "pending", "phone"),
    Target("order-summary", "designing", "phone"),
    Target("order-summary", "pending", "phone"),
    Target("order-summary", "paid", "phone"),
    Target("confirm-payment", "pending", "machine"),
    Target("confirm-payment", "paid", "machine"),
    Target("confirm-payment", "cancelled", "machine"),
    Target("app-payment", "designing", "app"),
    Target("app-payment", "pending", "app"),
    Target("app-payment", "paid", "app"),
    Target("app-payment", "cancelled", "app"),
]
OPEN_TARGETS = [Target(t.route, t.session, "none") for t in KEYS_TARGETS]

ROUTE_TAIL = {"register-user": "/register-user", "progress": "/progress",
              "order-summary": "/order-summary", "confirm-payment": "/confirm-payment",
              "app-payment": "/app-payment"}


def credential(w: World, cred: str, k: Known | None) -> str | None:
    if w.open_mode or cred == "none":
        return None
    if cred == "machine":
        return w.key
    if cred == "app":
        return APP_KEY
    assert cred == "phone" and k is not None and k.token is not None
    return k.token


def target_path(t: Target, k: Known | None) -> str:
    if t.route == "create-session":
        return "/api/vending/create-session"
    assert k is not None
    return spath(k.sid, ROUTE_TAIL[t.route])


def base_body(w: World, route: str, sid: str) -> dict[str, Any]:
    """A body the route would accept for a session in the right state."""
    if route == "create-session":
        return {"machine_id": MID}
    if route == "register-user":
        return {"machine_id": MID, "session_id": sid}
    if route == "progress":
        return {"user_progress": "brand_selected"}
    if route == "order-summary":
        return {"session_id": sid, "order_data": ORDER_DATA, "payment_amount": 19.99,
                "currency": "GBP"}
    if route == "confirm-payment":
        return {"session_id": sid, "payment_method": "card", "payment_amount": 19.99,
                "transaction_id": w.next_id("fuzz-txn"),
                "payment_data": {"card_last_four": "1234"}}
    if route == "app-payment":
        return {"payment_amount": 19.99, "transaction_id": w.next_id("fuzz-app-txn")}
    raise AssertionError(route)


def bad_fields(w: World, route: str, sid: str
               ) -> dict[str, tuple[st.SearchStrategy[Any], bool]]:
    """Per field of ``route``'s body: (values the hub must refuse, required?)."""
    machine_ids = wrong_type("str") | (
        st.text(max_size=60).filter(lambda s: re.fullmatch(r"[A-Za-z0-9_-]{1,50}", s) is None)
        if w.open_mode else other_text(MID) | st.just(OTHER_MID))
    other_sids = wrong_type("str", "null") | other_text(sid, max_size=90) | st.sampled_from(
        [k.sid for k in w.sessions.values() if k.sid != sid])
    if route == "create-session":
        return {
            "machine_id": (machine_ids, True),
            "location": (wrong_type("str", "null") | st.text(min_size=201, max_size=300),
                         False),
            "session_timeout_minutes": (
                wrong_type("int") | st.integers().filter(lambda n: not 1 <= n <= 120),
                False),
            "metadata": (wrong_type("dict", "null") | big_object(), False),
        }
    if route == "register-user":
        return {
            "machine_id": (wrong_type("str") | other_text(MID) | st.just(OTHER_MID), True),
            "session_id": (other_sids.filter(lambda v: v is not None), True),
            "location": (wrong_type("str", "null"), False),
            "user_agent": (wrong_type("str", "null"), False),
        }
    if route == "progress":
        return {"user_progress": (wrong_type("str") | st.sampled_from(
            ["payment_pending", "payment_completed", "PAYMENT_REACHED", "Brand_Selected",
             " brand_selected", "brand_selected ", "qr-scanned", "", "expired",
             "cancelled", "designing"]) | other_text(*PHONE_PROGRESS), True)}
    if route == "order-summary":
        currencies = BAD_CURRENCY_FORMAT if w.open_mode else (
            BAD_CURRENCY_FORMAT | st.sampled_from(["EUR", "USD", "XXX", "GBX"]))
        return {
            "order_data": (bad_order_data(), True),
            "session_id": (other_sids.filter(lambda v: v is not None), False),
            "payment_amount": (bad_amounts(accepts_null=True, price_only=not w.open_mode),
                               False),
            "currency": (currencies, False),
        }
    if route == "confirm-payment":
        return {
            "session_id": (other_sids.filter(lambda v: v is not None), True),
            "payment_method": (wrong_type("str") | other_text(*PAYMENT_METHODS)
                               | st.sampled_from(["Card", "CARD", "app", "cash ", "paypal"]),
                               True),
            "payment_amount": (bad_amounts(accepts_null=False, price_only=True), True),
            "transaction_id": (wrong_type("str") | st.just("")
                               | st.text(min_size=101, max_size=200), True),
            "payment_data": (wrong_type("dict", "null") | big_object(), False),
        }
    if route == "app-payment":
        return {
            "payment_amount": (bad_amounts(accepts_null=False, price_only=True), True),
            "transaction_id": (wrong_type("str") | st.just("")
                               | st.text(min_size=101, max_size=200), True),
            "currency": (BAD_CURRENCY_FORMAT, False),
            "order_data": (bad_order_data(optional=True), False),
        }
    raise AssertionError(route)


_REMOVE = object()


def mutated_body(data: st.DataObject, w: World, route: str, sid: str
                 ) -> tuple[dict[str, Any], list[str]]:
    """A valid body with 1..3 fields made bad (ill-typed, refused value, or a required
    one missing), plus maybe unknown extra fields. Returns (body, fields changed)."""
    specs = bad_fields(w, route, sid)
    names = data.draw(st.lists(st.sampled_from(sorted(specs)), min_size=1, max_size=3,
                               unique=True), label="fields")
    body = base_body(w, route, sid)
    for name in names:
        bad, required = specs[name]
        value = data.draw(bad | st.just(_REMOVE) if required else bad, label=name)
        if value is _REMOVE:
            body.pop(name, None)
        else:
            body[name] = value
    extras = data.draw(st.dictionaries(unknown_keys(), JSON_VALUES, max_size=3),
                       label="extras")
    return {**body, **extras}, names


def check_names_field(r: httpx.Response, text: str, fields: list[str]) -> None:
    """CONTRACT §1: a 422 names the field (one field changed, JSON well-formed)."""
    if r.status_code == 422 and len(fields) == 1 and text != "Invalid JSON body":
        assert fields[0] in text, f"422 detail does not name {fields[0]!r}: {describe(r)}"


# ---------------------------------------------------------------------------------------
# session ids in the path
# ---------------------------------------------------------------------------------------
SESSION_ROUTES = {  # name: (method, tail, body?)
    "status": ("GET", "/status", False),
    "register-user": ("POST", "/register-user", True),
    "progress": ("POST", "/progress", True),
    "order-summary": ("POST", "/order-summary", True),
    "order-info": ("GET", "/order-info", False),
    "design-image": ("GET", "/design-image", False),
    "confirm-payment": ("POST", "/confirm-payment", True),
    "app-payment": ("POST", "/app-payment", True),
    "validate": ("POST", "/validate", False),
    "qr.png": ("GET", "/qr.png", False),
    "qr.svg": ("GET", "/qr.svg", False),
    "cancel": ("DELETE", "", False),
}

_ID_MACHINE = st.from_regex(r"[A-Za-z0-9_-]{1,50}", fullmatch=True)
_ID_RANDOM = st.from_regex(r"[A-Za-z0-9]{6,16}", fullmatch=True)
_ID_STAMP = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)
                         ).map(lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}_"
                                         f"{d.hour:02d}{d.minute:02d}{d.second:02d}")


def well_formed_ids() -> st.SearchStrategy[str]:
    return st.builds(lambda m, s, r: f"{m}_{s}_{r}", _ID_MACHINE, _ID_STAMP, _ID_RANDOM)


def malformed_ids() -> st.SearchStrategy[str]:
    """Ids CONTRACT §1 calls malformed: bad dates and times, ``? & = #`` and other
    characters, too long, unicode, empty-ish. (No ``/``, which would change the route,
    and not ``.``/``..``, which a client folds away.)"""
    valid = well_formed_ids()
    bad_dates = st.sampled_from(["20251323", "20250132", "20250230", "00000000", "2025012",
                                 "202501234", "2025-01-23", "abcdefgh", "٢٠٢٥٠١٢٣"])
    bad_times = st.sampled_from(["246000", "236000", "235960", "15503", "1550300", "ab:cd0"])
    inject = st.sampled_from(list("?&=#% \t\n\r\\\"'<>;:+@!$*(),.~[]{}|^`") +
                             ["\x00", "é", "\u200b", "\U0001F600", "%2F", "..", "_", "-"])

    def insert(s: str, at: int, c: str) -> str:
        at %= len(s) + 1
        return s[:at] + c + s[at:]

    near = st.one_of(
        st.builds(lambda m, d, t, r: f"{m}_{d}_{t}_{r}", _ID_MACHINE, bad_dates,
                  st.just("155030"), _ID_RANDOM),
        st.builds(lambda m, t, r: f"{m}_20250123_{t}_{r}", _ID_MACHINE, bad_times, _ID_RANDOM),
        st.builds(lambda m, r: f"{m}_20250123_155030_{r}", _ID_MACHINE,
                  st.text(alphabet="ABCxyz019", max_size=5)
                  | st.text(alphabet="ABCxyz019", min_size=17, max_size=40)),
        st.builds(lambda m: f"{m}_20250123_155030_ABCDEF0", st.text(
            alphabet="ABCabc019_-", min_size=51, max_size=90)),
        st.builds(lambda m: f"{m}_20250123_155030_ABCDEF0", st.text(min_size=1, max_size=12)),
        st.builds(insert, valid, st.integers(0, 100), inject),
        st.builds(lambda s, n: s.replace("_", "", n), valid, st.integers(1, 3)),
        st.builds(lambda s: s.replace("_", "-"), valid),
        st.sampled_from([" ", "%", "?", "&", "=", "#", "x", "_", "__", "null", "None",
                         "undefined", "0", "-1", "' OR 1=1 --", "*", "~", "\x00",
                         "VM_20250123_155030_ABCDEF?x=1", "VM_20250123_155030_ABC&DEF",
                         "VM_20250123_155030_ABCDEF#frag", "VM_20250123_155030_ABC=EF",
                         "x" * 84, "A" * 300]),
        st.text(min_size=1, max_size=120),
    )
    return near.filter(lambda s: not well_formed(s) and "/" not in s
                       and s not in ("", ".", ".."))


def id_request(w: World, route: str, sid: str, cred: str, garbage: str,
               junk: bytes | None) -> httpx.Response:
    method, tail, has_body = SESSION_ROUTES[route]
    headers: dict[str, str] = {}
    if cred == "garbage":
        headers = {"Authorization": f"Bearer {garbage}"}
    elif cred != "none":
        headers = auth({"machine": w.key, "phone": w.s("designing").token,
                        "app": APP_KEY}[cred])
    content = None
    if has_body:
        content = junk if junk is not None else body_bytes(base_body(w, route, sid))
    return w.http.request(method, spath(sid, tail), headers=headers, content=content)


GARBAGE = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
            max_size=60),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=43
            ).map(lambda s: "mk_" + s),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=32
            ).map(lambda s: "pt_" + s),
    st.sampled_from(["mk_", "pt_", "app-secret-ke", "APP-SECRET-KEY", "app-secret-key2",
                     "null", "undefined", "Bearer"]),
).filter(lambda s: s != APP_KEY)


def id_creds(w: World) -> st.SearchStrategy[str]:
    return st.sampled_from(["none", "garbage"] if w.open_mode
                           else ["machine", "phone", "app", "none", "garbage"])


@FUZZ
@given(data=st.data())
def test_malformed_session_ids_are_400(world: World, data: st.DataObject) -> None:
    """A malformed id is 400 ``Invalid session ID format`` on every session route, after
    the credential check (401) and before the body (CONTRACT §1 order of checks)."""
    w = world
    sid = data.draw(malformed_ids(), label="session_id")
    route = data.draw(st.sampled_from(sorted(SESSION_ROUTES)), label="route")
    cred = data.draw(id_creds(w), label="cred")
    garbage = data.draw(GARBAGE, label="garbage") if cred == "garbage" else ""
    junk = data.draw(st.none() | junk_bodies(), label="junk body")
    mark = log_size(w.server)
    r = id_request(w, route, sid, cred, garbage, junk)
    if not w.open_mode and (cred == "garbage" or (cred == "none" and route != "register-user")):
        assert_refused(r, (401,), "Not authenticated")
    else:
        assert_refused(r, (400,), "Invalid session ID format")
    assert_unchanged(w, mark)


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_unknown_well_formed_ids_are_404(world: World, data: st.DataObject) -> None:
    """A well-formed id of no session is 404 ``Session not found`` (existence is checked
    before ownership, so any valid credential gets the 404)."""
    w = world
    sid = data.draw(well_formed_ids(), label="session_id")
    assume(all(k.sid != sid for k in w.sessions.values()))
    route = data.draw(st.sampled_from(sorted(SESSION_ROUTES)), label="route")
    cred = data.draw(id_creds(w), label="cred")
    garbage = data.draw(GARBAGE, label="garbage") if cred == "garbage" else ""
    mark = log_size(w.server)
    r = id_request(w, route, sid, cred, garbage, None)
    if not w.open_mode and (cred == "garbage" or (cred == "none" and route != "register-user")):
        assert_refused(r, (401,), "Not authenticated")
    else:
        assert_refused(r, (404,), "Session not found")
    assert_unchanged(w, mark)


# ---------------------------------------------------------------------------------------
# bodies
# ---------------------------------------------------------------------------------------
@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_bad_bodies_are_refused(world: World, data: st.DataObject) -> None:
    """Arbitrary JSON, non-JSON bytes and valid bodies with fields made ill-typed, out of
    range or missing: a 4xx with a ``detail`` (a 422 names the field), nothing stored."""
    w = world
    t = data.draw(st.sampled_from(OPEN_TARGETS if w.open_mode else KEYS_TARGETS),
                  label="target")
    k = w.s(t.session) if t.session else None
    sid = k.sid if k else ""
    fields: list[str] = []
    if data.draw(st.booleans(), label="junk?"):
        content = data.draw(junk_bodies(), label="body")
    else:
        body, fields = mutated_body(data, w, t.route, sid)
        content = body_bytes(body)
    mark = log_size(w.server)
    r = w.http.request("POST", target_path(t, k), headers=auth(credential(w, t.cred, k)),
                       content=content)
    text = assert_refused(r)
    check_names_field(r, text, fields)
    assert_unchanged(w, mark)


AMOUNT_TARGETS = [t for t in KEYS_TARGETS
                  if t.route in ("order-summary", "confirm-payment", "app-payment")]


@settings(FUZZ, max_examples=50)
@given(target=st.sampled_from(AMOUNT_TARGETS), amount=AMOUNTS)
@example(target=AMOUNT_TARGETS[0], amount=Raw("99999999999999999999999999.995"))
@example(target=Target("confirm-payment", "pending", "machine"), amount=Raw("1e400"))
@example(target=Target("app-payment", "pending", "app"), amount="NaN")
def test_bad_amounts_are_refused(world: World, target: Target, amount: Any) -> None:
    """NaN, ``"NaN"``, 1e400, 19.999, -1, 0, ``"abc"``, true, null, huge strings … as
    ``payment_amount`` (everything else valid): refused with a 4xx, nothing stored. In
    ``keys`` mode any amount other than the price is refused; ``open`` mode trusts the
    phone's price, so there only invalid amounts are."""
    w = world
    t = Target(target.route, target.session, "none") if w.open_mode else target
    assume(amount_refused(amount, accepts_null=t.route == "order-summary",
                          price_only=not (w.open_mode and t.route == "order-summary")))
    assert t.session is not None
    k = w.s(t.session)
    body = base_body(w, t.route, k.sid)
    body["payment_amount"] = amount
    mark = log_size(w.server)
    r = w.http.request("POST", target_path(t, k), headers=auth(credential(w, t.cred, k)),
                       content=body_bytes(body))
    text = assert_refused(r)
    check_names_field(r, text, ["payment_amount"])
    assert_unchanged(w, mark)


@pytest.mark.parametrize("state", ["designing", "pending"])
@pytest.mark.parametrize("currency", ["EUR", "USD"])
def test_app_payment_in_another_currency_is_refused(keys_world: World, state: str,
                                                    currency: str) -> None:
    """``app-payment`` of 19.99 in a currency other than the order's (or the price
    list's, GBP) does not match it: refused, the session stays unpaid (CONTRACT §3:
    "the amount must match the order or, without one, the price list")."""
    w = keys_world
    sid, _ = fresh_designing(w) if state == "designing" else fresh_pending(w)
    before = status_of(w, sid)
    mark = log_size(w.server)
    body = {"payment_amount": 19.99, "currency": currency,
            "transaction_id": w.next_id("fuzz-currency-txn")}
    r = w.http.request("POST", spath(sid, "/app-payment"), headers=auth(APP_KEY),
                       content=body_bytes(body))
    assert_refused(r)
    assert status_of(w, sid) == before
    assert_unchanged(w, mark)


# ---------------------------------------------------------------------------------------
# credentials
# ---------------------------------------------------------------------------------------
#: route: (session it is aimed at, roles it admits)
CRED_ROUTES: dict[str, tuple[str | None, frozenset[str]]] = {
    "create-session": (None, frozenset({"machine"})),
    "status": ("pending", frozenset({"machine", "phone"})),
    "register-user": ("designing", frozenset({"anonymous", "phone"})),
    "progress": ("designing", frozenset({"phone"})),
    "order-summary": ("designing", frozenset({"phone"})),
    "order-info": ("pending", frozenset({"machine", "phone"})),
    "design-image": ("pending", frozenset({"machine"})),
    "confirm-payment": ("pending", frozenset({"machine"})),
    "app-payment": ("pending", frozenset({"app"})),
    "validate": ("pending", frozenset({"machine", "phone", "app"})),
    "qr.png": ("pending", frozenset({"machine"})),
    "qr.svg": ("pending", frozenset({"machine"})),
    "cancel": ("designing", frozenset({"machine"})),
}
CRED_KINDS = ("none", "garbage", "scheme", "machine", "other-machine", "phone",
              "other-phone", "app")


def expected_for(route: str, kind: str) -> tuple[int, str] | None:
    """The refusal CONTRACT §1 gives ``kind`` on ``route``, or None when it is admitted."""
    roles = CRED_ROUTES[route][1]
    if kind == "none":
        return None if "anonymous" in roles else (401, "Not authenticated")
    if kind in ("garbage", "scheme"):
        return (401, "Not authenticated")
    if kind in ("other-machine", "other-phone"):
        return (403, "Forbidden")
    if route == "create-session" and kind == "phone":
        return (403, "Forbidden")
    return None if kind in roles else (403, "Forbidden")


CRED_CASES = [(route, kind) for route in CRED_ROUTES for kind in CRED_KINDS
              if expected_for(route, kind) is not None]


@settings(FUZZ, max_examples=40)
@given(case=st.sampled_from(CRED_CASES), garbage=GARBAGE,
       scheme=st.sampled_from(["Basic", "Token", "Digest", "Bearerx", "MAC", "Bearer:"]))
def test_bad_credentials_are_refused(keys_world: World, case: tuple[str, str],
                                     garbage: str, scheme: str) -> None:
    """A missing or wrong credential is 401 ``Not authenticated``; another machine's key,
    another session's phone token or a credential of the wrong role is 403 ``Forbidden``
    — with an otherwise valid request, and nothing changes."""
    w = keys_world
    route, kind = case
    session, _ = CRED_ROUTES[route]
    k = w.s(session) if session else None
    other_phone = w.s("pending" if session == "designing" else "designing").token
    header = {
        "none": None, "garbage": f"Bearer {garbage}", "scheme": f"{scheme} {w.key}",
        "machine": f"Bearer {w.key}", "other-machine": f"Bearer {w.other_key}",
        "phone": f"Bearer {(k or w.s('designing')).token}",
        "other-phone": f"Bearer {other_phone}", "app": f"Bearer {APP_KEY}",
    }[kind]
    headers = {} if header is None else {"Authorization": header}
    if route == "create-session":
        method, path = "POST", "/api/vending/create-session"
        content: bytes | None = body_bytes(base_body(w, route, ""))
    else:
        assert k is not None
        method, tail, has_body = SESSION_ROUTES[route]
        path = spath(k.sid, tail)
        content = body_bytes(base_body(w, route, k.sid)) if has_body else None
    mark = log_size(w.server)
    r = w.http.request(method, path, headers=headers, content=content)
    expected = expected_for(route, kind)
    assert expected is not None
    assert_refused(r, (expected[0],), expected[1])
    assert_unchanged(w, mark)


# ---------------------------------------------------------------------------------------
# QR ?scale=
# ---------------------------------------------------------------------------------------
def scale_ok(s: str) -> bool:
    """An integer 1..40 (leading zeros allowed)."""
    return s.isascii() and s.isdigit() and len(s.lstrip("0")) <= 2 and 1 <= int(s) <= 40


BAD_SCALES = st.one_of(
    st.sampled_from(["0", "41", "-1", "", "abc", "1.5", "1e1", "٣", "+5", " 5", "5 ", "0x10",
                     "10**2", "40.0", "99999999999999999999999", "NaN", "null", "00",
                     "4" * 5000]),
    st.integers().filter(lambda n: not 1 <= n <= 40).map(str),
    st.text(max_size=10),
).filter(lambda s: not scale_ok(s))


@settings(FUZZ, max_examples=25)
@given(session=st.sampled_from(["active", "designing", "pending", "paid", "cancelled"]),
       fmt=st.sampled_from(["png", "svg"]), scale=BAD_SCALES)
@example(session="pending", fmt="png", scale="4" * 5000)
def test_bad_qr_scale_is_refused(world: World, session: str, fmt: str, scale: str) -> None:
    """``qr.png``/``qr.svg`` with ``?scale=`` outside 1..40 or not an integer: a 4xx."""
    w = world
    k = w.s(session)
    mark = log_size(w.server)
    r = w.http.request("GET", spath(k.sid, f"/qr.{fmt}"), headers=auth(w.key),
                       params={"scale": scale})
    text = assert_refused(r)
    assert "scale" in text, describe(r)
    assert_unchanged(w, mark)


# ---------------------------------------------------------------------------------------
# body size
# ---------------------------------------------------------------------------------------
ALL_ROUTES = ["create-session", *SESSION_ROUTES]


def size_request(w: World, route: str, session: str, cred: str, content: Any
                 ) -> httpx.Response:
    k = w.s(session)
    token = {"machine": w.key, "phone": k.token, "none": None,
             "garbage": "mk_garbage"}[cred]
    headers = auth(None if w.open_mode else token)
    if route == "create-session":
        return w.http.request("POST", "/api/vending/create-session", headers=headers,
                              content=content)
    method, tail, _ = SESSION_ROUTES[route]
    return w.http.request(method, spath(k.sid, tail), headers=headers, content=content)


def chunks(payload: bytes, size: int) -> Iterator[bytes]:
    """The body without a Content-Length (chunked), so only counting can catch it."""
    for i in range(0, len(payload), size):
        yield payload[i:i + size]


@settings(FUZZ, max_examples=25)
@given(route=st.sampled_from(ALL_ROUTES),
       session=st.sampled_from(["active", "designing", "pending", "paid", "cancelled"]),
       cred=st.sampled_from(["machine", "phone", "none", "garbage"]),
       size=st.integers(BODY_LIMIT + 1, 256 * 1024) | st.just(BODY_LIMIT + 1),
       chunked=st.booleans(), chunk=st.integers(1024, 64 * 1024),
       json_like=st.booleans())
def test_oversize_bodies_are_413(world: World, route: str, session: str, cred: str,
                                 size: int, chunked: bool, chunk: int,
                                 json_like: bool) -> None:
    """A body over 16 KiB on any route but order-summary: 413 ``Request body too large``,
    with or without a Content-Length (chunked bodies only where the route reads one)."""
    w = world
    if route == "order-summary":
        size += ORDER_LIMIT - BODY_LIMIT
    payload = (b'{"pad":"' + b"x" * (size - 10) + b'"}') if json_like else b"x" * size
    assert len(payload) == size
    has_body = route == "create-session" or SESSION_ROUTES[route][2]
    content: Any = chunks(payload, chunk) if chunked and has_body else payload
    mark = log_size(w.server)
    r = size_request(w, route, session, cred, content)
    assert_refused(r, (413,), TOO_LARGE["detail"])
    assert r.json() == TOO_LARGE
    assert_unchanged(w, mark)


def _padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` with an unknown ``pad`` field that makes it exactly ``size`` bytes."""
    raw = body_bytes({**body, "pad": ""})
    raw = body_bytes({**body, "pad": "x" * (size - len(raw))})
    assert len(raw) == size
    return raw


def test_body_limits_are_exact(keys_world: World) -> None:
    """16 KiB (1 MiB for order-summary) is allowed; one byte more is 413."""
    w = keys_world
    mark = log_size(w.server)
    create = {"machine_id": MID}
    r = w.http.request("POST", "/api/vending/create-session", headers=auth(w.key),
                       content=_padded(create, BODY_LIMIT))
    assert r.status_code == 200, describe(r)
    r = w.http.request("POST", "/api/vending/create-session", headers=auth(w.key),
                       content=_padded(create, BODY_LIMIT + 1))
    assert_refused(r, (413,), TOO_LARGE["detail"])

    order = {"order_data": ORDER_DATA, "payment_amount": 19.99, "currency": "GBP"}
    sid, token = fresh_designing(w)
    r = w.http.request("POST", spath(sid, "/order-summary"), headers=auth(token),
                       content=_padded(order, ORDER_LIMIT))
    assert r.status_code == 200, describe(r)
    sid, token = fresh_designing(w)
    r = w.http.request("POST", spath(sid, "/order-summary"), headers=auth(token),
                       content=_padded(order, ORDER_LIMIT + 1))
    assert_refused(r, (413,), TOO_LARGE["detail"])
    after = status_of(w, sid)
    assert after["status"] == "designing" and after["seq"] == 2, after
    assert_unchanged(w, mark)


# ---------------------------------------------------------------------------------------
# extreme JSON values: deep nesting, huge numbers
# ---------------------------------------------------------------------------------------
def nested(depth: int, kind: str) -> Raw:
    """``depth`` nested arrays, or objects ``{"a": …}``."""
    return Raw("[" * depth + "]" * depth if kind == "list"
               else '{"a":' * depth + "1" + "}" * depth)


#: valid JSON that is hard on a server: deep nesting, integers beyond 64 bits, extremes
EXTREME_VALUES = st.one_of(
    st.builds(nested, st.sampled_from([254, 255, 256, 300, 999, 1000, 1001, 2000])
              | st.integers(1, 2500), st.sampled_from(["list", "dict"])),
    st.one_of(st.integers(2**63 - 2, 10**40), st.integers(-10**40, -2**63 + 1),
              st.sampled_from([2**64, -2**63 - 1, 10**30])).map(lambda n: Raw(str(n))),
    st.sampled_from([Raw("1e308"), Raw("-1e308"), Raw("1e400"), Raw("5e-324"),
                     Raw("1" + "0" * 400), Raw("0." + "0" * 400 + "1")]),
)


@settings(FUZZ, max_examples=25)
@given(place=st.sampled_from(["create-extra", "create-metadata", "progress-extra",
                              "order-data", "app-order-data", "payment-data"]),
       blob=EXTREME_VALUES)
@example(place="create-extra", blob=nested(1000, "list"))
@example(place="order-data", blob=nested(300, "list"))
@example(place="order-data", blob=Raw(str(2**64)))
@example(place="app-order-data", blob=nested(254, "dict"))
def test_extreme_json_values_are_never_a_5xx(world: World, place: str, blob: Raw) -> None:
    """Deep nesting, integers beyond 64 bits, 1e400 … inside an otherwise valid body (an
    unknown field, or an object field that takes anything): accepted, or refused with a
    4xx that changes nothing — never a 5xx — and the session stays readable afterwards
    (``status``, ``order-info``)."""
    w = world
    mark = log_size(w.server)
    sid: str | None = None
    if place.startswith("create"):
        body = {"junk": blob} if place == "create-extra" else {"metadata": {"a": blob}}
        r = w.http.request("POST", "/api/vending/create-session", headers=auth(w.key),
                           content=body_bytes({"machine_id": MID, **body}))
        if r.status_code == 200:
            sid = r.json()["session_id"]
        else:
            assert_refused(r)
    else:
        sid, token = fresh_pending(w) if place == "payment-data" else fresh_designing(w)
        before = status_of(w, sid)
        if place == "progress-extra":
            r = w.http.request("POST", spath(sid, "/progress"), headers=auth(token),
                               content=body_bytes({"user_progress": "brand_selected",
                                                   "junk": blob}))
        elif place == "order-data":
            r = w.http.request("POST", spath(sid, "/order-summary"), headers=auth(token),
                               content=body_bytes({"order_data": {**ORDER_DATA, "extra": blob},
                                                   "payment_amount": 19.99}))
        elif place == "app-order-data":
            r = w.http.request("POST", spath(sid, "/app-payment"), headers=auth(
                None if w.open_mode else APP_KEY), content=body_bytes(
                    {"payment_amount": 19.99, "transaction_id": w.next_id("fuzz-deep"),
                     "order_data": {**ORDER_DATA, "extra": blob}}))
        else:
            r = w.http.request("POST", spath(sid, "/confirm-payment"), headers=auth(w.key),
                               content=body_bytes({
                                   "session_id": sid, "payment_method": "card",
                                   "payment_amount": 19.99,
                                   "transaction_id": w.next_id("fuzz-deep"),
                                   "payment_data": {"a": blob}}))
        if r.status_code != 200:
            assert_refused(r)
            assert status_of(w, sid) == before
    if sid is not None:  # readable afterwards
        status_of(w, sid)
        r = w.http.request("GET", spath(sid, "/order-info"), headers=auth(w.key))
        assert r.status_code < 500, describe(r)
    logged = tracebacks_since(w.server, mark)
    assert not logged, f"server logged a traceback:\n{logged[-3000:]}"


# ---------------------------------------------------------------------------------------
# unknown extra fields are ignored
# ---------------------------------------------------------------------------------------
def extras(*known: str) -> st.SearchStrategy[dict[str, Any]]:
    """Unknown fields, the legacy ones (``ip_address``, ``user_agent``, ``qr_data``)
    among them, with any JSON value."""
    return st.dictionaries(unknown_keys().filter(lambda k: k not in known), JSON_VALUES,
                           max_size=6)


LEGACY = st.fixed_dictionaries({
    "ip_address": st.sampled_from(["203.0.113.7", "::1", "", "unknown"]),
    "user_agent": st.text(max_size=120),
    "qr_data": st.text(max_size=120),
})


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_unknown_extra_fields_are_ignored(world: World, data: st.DataObject) -> None:
    """create-session, register-user, progress, order-summary (also inside
    ``order_data``) and confirm-payment or app-payment accept valid bodies carrying
    unknown fields with 200, and each moves the session exactly one event on."""
    w = world
    legacy = data.draw(LEGACY, label="legacy")
    pay_in_app = data.draw(st.booleans(), label="app-payment?")

    def call(path: str, token: str | None, body: dict[str, Any], seq: int | None
             ) -> dict[str, Any]:
        r = w.http.request("POST", path, headers=auth(None if w.open_mode else token),
                           content=body_bytes(body))
        assert r.status_code == 200, describe(r)
        out: dict[str, Any] = r.json()
        if seq is not None:
            s = w.http.request("GET", spath(sid, "/status"), headers=auth(w.key))
            assert s.status_code == 200 and s.json()["seq"] == seq, describe(s)
        return out

    body = {"machine_id": MID, "ip_address": legacy["ip_address"],
            "user_agent": legacy["user_agent"], **data.draw(extras(), label="create extras")}
    sid = ""
    sid = call("/api/vending/create-session", w.key, body, None)["session_id"]
    body = {"machine_id": MID, "session_id": sid, **legacy,
            **data.draw(extras("user_agent"), label="register extras")}
    token = call(spath(sid, "/register-user"), None, body, 2)["phone_token"]
    body = {"user_progress": "brand_selected", **legacy,
            **data.draw(extras(), label="progress extras")}
    assert call(spath(sid, "/progress"), token, body, 3)["user_progress"] == "brand_selected"
    order_data = {**ORDER_DATA, **data.draw(st.dictionaries(
        st.text(min_size=1, max_size=16).filter(lambda k: k not in ORDER_DATA_FIELDS),
        SAFE_JSON_VALUES, max_size=4), label="order_data extras")}
    body = {"session_id": sid, "order_data": order_data, "payment_amount": "19.99",
            "currency": "GBP", **legacy, **data.draw(extras(), label="order extras")}
    got = call(spath(sid, "/order-summary"), token, body, 4)
    assert got["status"] == "payment_pending", got
    if pay_in_app:
        body = {"payment_amount": 19.99, "transaction_id": w.next_id("extra-app"),
                "currency": "GBP", **legacy, **data.draw(extras(), label="app extras")}
        got = call(spath(sid, "/app-payment"), APP_KEY, body, 5)
    else:
        # RFC 8259 interoperable integers: beyond 64 bits the hub refuses with a 422
        payment_data = {"card_last_four": "1234", **data.draw(st.dictionaries(
            st.text(max_size=10), SAFE_JSON_VALUES, max_size=3), label="payment_data")}
        body = {"session_id": sid, "payment_method": "card", "payment_amount": 19.99,
                "transaction_id": w.next_id("extra-txn"), "payment_data": payment_data,
                **legacy, **data.draw(extras(), label="confirm extras")}
        got = call(spath(sid, "/confirm-payment"), w.key, body, 5)
    assert got["status"] == "payment_completed", got


# ---------------------------------------------------------------------------------------
# the whole run
# ---------------------------------------------------------------------------------------
def test_no_traceback_logged(keys_world: World, open_world: World) -> None:
    """Neither hub logged a traceback while this module fuzzed it."""
    for w in (keys_world, open_world):
        logged = tracebacks_since(w.server, w.log_start)
        assert not logged, f"server logged a traceback:\n{logged[-3000:]}"
