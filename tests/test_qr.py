"""CONTRACT §3 ``qr_url`` and the ``qr.png``/``qr.svg`` routes, through a real hub.

Each QR image is decoded with zxing-cpp: the text must be the ``qr_url`` that
``create-session`` answered, byte for byte, and splitting that URL must give back exactly
the ``machine_id``, ``session_id`` and ``location`` sent (every value percent-encoded per
RFC 3986, so ``&``, ``=``, ``#``, ``+``, ``%`` and non-ASCII text survive).
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import PIL.Image
import PIL.ImageDraw
import pytest
import zxingcpp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .server import HubServer

BASE = "https://pimpmycase.shop/"
CREATE = "/api/vending/create-session"
#: RFC 3986: a value may hold only unreserved characters and %XX escapes.
ENCODED = re.compile(r"(?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})*")

LOCATIONS = [
    "Westfield London, Level 2",
    "Shop 4 & 5",
    "a=b",
    "Unit #12",
    "Why?",
    "100% cotton",
    "1+1",
    "Aisle 3/B",
    "Café Église",
    "北京市中文店",
    "📱 phone cases 🎉",
    "a b&c=d#e?f%g+h/i;j:k@l,m!n'o(p)q*r[s]t~u",
    "%20%26%3D",  # already-encoded-looking text must come back literally
    "+",
    "&location=evil&machine_id=OTHER",
    "",
    " leading and trailing ",
    "line\nbreak\ttab",
    "é" * 200,
    "中" * 200,
    "😀" * 200,  # 4-byte UTF-8: the longest percent-encoded location allowed
]


@pytest.fixture(scope="module")
def open_client(open_hub: HubServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open_hub.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def keys_machine(keys_hub: HubServer) -> tuple[str, str]:
    machine_id = "VM_QR-keys_01"
    return machine_id, keys_hub.add_machine(machine_id)


@pytest.fixture(scope="module")
def keys_client(keys_hub: HubServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keys_hub.url, timeout=30) as client:
        yield client


def bearer(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def qr_path(sid: str, fmt: str = "png") -> str:
    return f"/api/vending/session/{sid}/qr.{fmt}"


def create(client: httpx.Client, machine_id: str, location: str | None,
           key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"machine_id": machine_id}
    if location is not None:
        body["location"] = location
    r = client.post(CREATE, json=body, headers=bearer(key))
    assert r.status_code == 200, (location, r.status_code, r.text)
    data = r.json()
    assert data["session_id"].startswith(machine_id + "_")
    return data


def fetch_png(client: httpx.Client, sid: str, key: str | None = None,
              scale: int | None = None) -> bytes:
    params = {} if scale is None else {"scale": str(scale)}
    r = client.get(qr_path(sid), params=params, headers=bearer(key))
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    return r.content


def decode(image: PIL.Image.Image) -> str:
    """The one text the image's QR code(s) hold. zxing may report the same symbol twice
    (seen with long UTF-8 payloads), so every detection must agree."""
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert found, "zxing found no QR code"
    texts = {b.text for b in found}
    assert len(texts) == 1, f"zxing read different texts: {texts}"
    return texts.pop()


def decode_png(data: bytes) -> str:
    return decode(PIL.Image.open(io.BytesIO(data)))


def check_url(url: str, machine_id: str, session_id: str, location: str | None,
              base: str = BASE) -> None:
    """``url`` is ``base?qr=true&machine_id=…&session_id=…[&location=…]`` with every value
    RFC 3986 percent-encoded, and splitting it gives back exactly the values sent."""
    parts = urlsplit(url)
    want_parts = urlsplit(base)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == (
        want_parts.scheme, want_parts.netloc, want_parts.path, ""), url
    assert url.startswith(base + "?qr=true&"), url
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        assert ENCODED.fullmatch(value), f"{name} not RFC 3986 percent-encoded: {value!r}"
    got = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True,
                   encoding="utf-8", errors="strict")
    want = {"qr": ["true"], "machine_id": [machine_id], "session_id": [session_id]}
    if location is not None:
        want["location"] = [location]
    assert got == want


def roundtrip(client: httpx.Client, machine_id: str, location: str | None,
              key: str | None = None, scale: int | None = None) -> dict[str, Any]:
    data = create(client, machine_id, location, key)
    check_url(data["qr_url"], machine_id, data["session_id"], location)
    text = decode_png(fetch_png(client, data["session_id"], key, scale))
    assert text == data["qr_url"]
    return data


# -- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("location", LOCATIONS)
def test_png_decodes_to_qr_url_open_mode(open_client: httpx.Client, location: str) -> None:
    roundtrip(open_client, "VM_QR-open_01", location)


def test_png_without_location(open_client: httpx.Client) -> None:
    data = roundtrip(open_client, "VM-QR_noloc", None)
    assert "&location=" not in data["qr_url"]


@pytest.mark.parametrize("machine_id", ["VM_LONDON_01", "vm-london-01", "_", "-", "A",
                                        "VM__double__UNDER", "x" * 50, "a_b-c_D-9_0"])
def test_machine_ids_with_underscores_and_dashes(open_client: httpx.Client,
                                                 machine_id: str) -> None:
    roundtrip(open_client, machine_id, "Stand 7 & 8 #é")


@pytest.mark.parametrize("location", ["Shop 4 & 5 #1 ?a=b+c%d/é", "中文 📱", None])
def test_png_decodes_to_qr_url_keys_mode(keys_client: httpx.Client,
                                         keys_machine: tuple[str, str],
                                         location: str | None) -> None:
    machine_id, key = keys_machine
    roundtrip(keys_client, machine_id, location, key)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(location=st.text(max_size=200),
       machine_id=st.from_regex(r"[A-Za-z0-9_-]{1,50}", fullmatch=True))
@example(location="&=#?%+/ é中文😀", machine_id="VM_a-b_1")
@example(location="😀" * 200, machine_id="M" * 50)
def test_any_location_round_trips(open_client: httpx.Client, location: str,
                                  machine_id: str) -> None:
    roundtrip(open_client, machine_id, location)


def test_qr_base_setting(fresh_hub: Any) -> None:
    base = "https://cases.example.test/start"
    server = fresh_hub(open_mode=True, HUB_QR_BASE=base)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        data = create(client, "VM_QR-base", "Gate 5 & 6")
        check_url(data["qr_url"], "VM_QR-base", data["session_id"], "Gate 5 & 6", base)
        assert decode_png(fetch_png(client, data["session_id"])) == data["qr_url"]
    assert server.errors_logged() == ""


# -- access -------------------------------------------------------------------------------
def test_keys_mode_qr_needs_the_machine_key(keys_hub: HubServer, keys_client: httpx.Client,
                                            keys_machine: tuple[str, str]) -> None:
    machine_id, key = keys_machine
    sid = create(keys_client, machine_id, "Hall A", key)["session_id"]
    r = keys_client.get(qr_path(sid))
    assert (r.status_code, r.json()) == (401, {"detail": "Not authenticated"})
    r = keys_client.get(qr_path(sid, "svg"), headers=bearer("mk_not-a-real-key"))
    assert (r.status_code, r.json()) == (401, {"detail": "Not authenticated"})
    other = keys_hub.add_machine("VM_QR-other")
    r = keys_client.get(qr_path(sid), headers=bearer(other))
    assert (r.status_code, r.json()) == (403, {"detail": "Forbidden"})
    reg = keys_client.post(f"/api/vending/session/{sid}/register-user",
                           json={"machine_id": machine_id, "session_id": sid})
    assert reg.status_code == 200, reg.text
    r = keys_client.get(qr_path(sid), headers=bearer(reg.json()["phone_token"]))
    assert (r.status_code, r.json()) == (403, {"detail": "Forbidden"})


def test_unknown_and_malformed_session(open_client: httpx.Client) -> None:
    r = open_client.get(qr_path("VM_QR_20250123_155030_X9Y8Z7AB"))
    assert (r.status_code, r.json()) == (404, {"detail": "Session not found"})
    r = open_client.get(qr_path("not-a-session"))
    assert (r.status_code, r.json()) == (400, {"detail": "Invalid session ID format"})


def test_qr_of_finished_session_still_served(open_client: httpx.Client) -> None:
    data = create(open_client, "VM_QR-done", "Closed & gone")
    sid = data["session_id"]
    r = open_client.delete(f"/api/vending/session/{sid}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert decode_png(fetch_png(open_client, sid)) == data["qr_url"]


# -- SVG ------------------------------------------------------------------------------------
_MODULE = re.compile(r"M(\d+),(\d+)H(\d+)V(\d+)H(\d+)z")


def rasterise_svg(svg: bytes) -> PIL.Image.Image:
    """Draw the SVG's path (``qrcode``'s one-path form) so zxing can read it."""
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    _, _, w, h = (float(v) for v in root.attrib["viewBox"].split())
    paths = [el.attrib["d"] for el in root.iter("{http://www.w3.org/2000/svg}path")]
    assert paths, "SVG has no path"
    px = 6
    img = PIL.Image.new("L", (int(w) * px, int(h) * px), 255)
    draw = PIL.ImageDraw.Draw(img)
    for d in paths:
        d = d.replace(" ", "")
        matches = list(_MODULE.finditer(d))
        assert "".join(m.group(0) for m in matches) == d, "unexpected SVG path form"
        for m in matches:
            x0, y0, x1, y1, _ = (int(g) for g in m.groups())
            draw.rectangle([x0 * px, y0 * px, x1 * px - 1, y1 * px - 1], fill=0)
    return img


@pytest.mark.parametrize("location", ["Shop 4 & 5 #1 ?a=b+c%d/é 中文 😀", None])
def test_svg_is_the_qr_of_qr_url(open_client: httpx.Client, location: str | None) -> None:
    data = create(open_client, "VM_QR-svg", location)
    r = open_client.get(qr_path(data["session_id"], "svg"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0].strip() == "image/svg+xml"
    assert decode(rasterise_svg(r.content)) == data["qr_url"]


def test_unknown_image_format_404(open_client: httpx.Client) -> None:
    sid = create(open_client, "VM_QR-fmt", None)["session_id"]
    assert open_client.get(qr_path(sid, "gif")).status_code == 404


# -- scale ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", ["0", "41", "-1", "100", "1.5", "abc", "", "1e1", " 5",
                                   "+5", "٣", "10abc"])
@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_bad_scale_422(open_client: httpx.Client, scale: str, fmt: str) -> None:
    sid = create(open_client, "VM_QR-scale", "x")["session_id"]
    r = open_client.get(qr_path(sid, fmt), params={"scale": scale})
    assert r.status_code == 422, (scale, r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "scale" in detail


def test_bigger_scale_bigger_png(open_client: httpx.Client) -> None:
    data = create(open_client, "VM_QR-scale", "Scale & size")
    sid = data["session_id"]
    sizes = {}
    for scale in (1, 2, 5, 10, 40):
        png = fetch_png(open_client, sid, scale=scale)
        img = PIL.Image.open(io.BytesIO(png))
        sizes[scale] = img.size
        if scale >= 2:
            assert decode(img) == data["qr_url"], scale
    modules = sizes[1][0]
    assert sizes[1] == (modules, modules)
    for scale, size in sizes.items():
        assert size == (modules * scale, modules * scale), (scale, size)
    # cached per scale: asking again for a smaller one still gives the smaller image
    small = PIL.Image.open(io.BytesIO(fetch_png(open_client, sid, scale=2)))
    assert small.size == sizes[2]


# -- location length -----------------------------------------------------------------------
@pytest.mark.parametrize("location", ["x" * 201, "é" * 201, "😀" * 201, "a" * 5000])
def test_location_over_200_chars_422(open_client: httpx.Client, location: str) -> None:
    r = open_client.post(CREATE, json={"machine_id": "VM_QR-long", "location": location})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "location" in detail


def test_location_of_exactly_200_chars_accepted(open_client: httpx.Client) -> None:
    roundtrip(open_client, "VM_QR-long", "L" * 200)


def test_location_wrong_type_422(open_client: httpx.Client) -> None:
    for bad in (5, ["a"], {"a": 1}, True):
        r = open_client.post(CREATE, json={"machine_id": "VM_QR-type", "location": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "location" in r.json()["detail"]


def test_no_server_errors_logged(open_hub: HubServer, keys_hub: HubServer) -> None:
    """Runs last in this module: nothing above may have made the hub raise."""
    assert open_hub.errors_logged() == ""
    assert keys_hub.errors_logged() == ""
