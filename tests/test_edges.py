"""The edge parsers' fast paths against their exact definitions (no server).

``hub.schemas.amount`` reads plain amounts with integer arithmetic and everything else
through ``Decimal``; ``check_json`` skips its walk for bodies that cannot break it;
``parse_session_id`` checks the calendar without ``strptime``; order ids are UUIDv4.
Each is compared with a reference written the slow, obvious way.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import schemas as S
from hub.errors import HubError
from hub.ids import parse_session_id
from hub.money import AmountError, to_minor
from hub.service import _order_id

_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def reference_amount(text: str) -> int | None:
    """CONTRACT §1 by the book: a JSON number, or a string of digits with ≤ 2 decimals,
    in 0.01..10000.00 with ≤ 2 places; None when refused."""
    if text.startswith('"'):
        inner = text[1:-1]
        if not re.fullmatch(r"[0-9]{1,5}(?:\.[0-9]{1,2})?", inner):
            return None
        literal = inner
    elif _NUMBER.fullmatch(text):
        literal = text
    else:
        return None
    try:
        return to_minor(Decimal(literal))
    except AmountError:
        return None


def parsed_amount(text: str) -> int | None:
    try:
        return S.amount(msgspec.Raw(text.encode()))
    except HubError as exc:
        assert exc.status == 422
        return None


amounts = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,7}(\.[0-9]{1,3})?([eE][-+]?[0-9]{1,2})?\Z"),
    st.from_regex(r'\A"[0-9]{1,6}(\.[0-9]{0,3})?"\Z'),
    st.decimals(min_value=0, max_value=20000, places=2).map(str),
)


@given(amounts)
def test_amount_fast_path_equals_the_decimal_definition(text: str) -> None:
    assert parsed_amount(text) == reference_amount(text)


@pytest.mark.parametrize("text,minor", [("19.99", 1999), ('"19.99"', 1999), ("20", 2000),
                                        ("0.01", 1), ("10000.00", 1_000_000),
                                        ("1999e-2", 1999), ('"1.5"', 150)])
def test_amount_examples(text: str, minor: int) -> None:
    assert parsed_amount(text) == minor


@pytest.mark.parametrize("text", ["0", "0.00", "10000.01", "19.999", '"19.99', '"-1"',
                                  '"1e3"', "-5", '" 5"'])
def test_amount_refusals(text: str) -> None:
    try:
        assert parsed_amount(text) is None
    except msgspec.DecodeError:  # '"19.99' is not JSON: the body decoder refuses it first
        assert text == '"19.99'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(alphabet="ab{[0123456789", max_size=25),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=40)


def _refused(value: object, raw: bytes | None) -> bool:
    try:
        S.check_json(value, "order_data", raw)
    except HubError:
        return True
    return False


@given(json_values)
def test_check_json_fast_path_agrees_with_the_walk(value: object) -> None:
    raw = msgspec.json.encode(value)
    assert _refused(value, raw) == _refused(value, None)


@given(st.binary(max_size=60) | st.text(alphabet="0123456789a{[", max_size=60).map(str.encode))
def test_plain_is_its_definition(raw: bytes) -> None:
    # no run of 19 digits, at most MAX_DEPTH brackets
    slow = re.search(rb"[0-9]{19}", raw) is None and \
        raw.count(b"{") + raw.count(b"[") <= S.MAX_DEPTH
    assert S._plain(raw) == slow


def test_check_json_still_refuses_deep_and_huge() -> None:
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    assert _refused(deep, msgspec.json.encode(deep))
    assert _refused({"n": 2**64}, msgspec.json.encode({"n": 2**64}))
    assert not _refused({"n": 2**62}, msgspec.json.encode({"n": 2**62}))


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2999, 12, 31)),
       st.from_regex(r"\A[0-9]{8}\Z"), st.from_regex(r"\A[0-9]{6}\Z"))
def test_session_id_dates_checked_like_strptime(when: datetime, date: str, time: str
                                                ) -> None:
    good = f"VM_A_{when:%Y%m%d}_{when:%H%M%S}_ABCDEF12"
    parsed = parse_session_id(good)
    assert parsed is not None and parsed.machine_id == "VM_A"
    assert parsed.created == when.replace(microsecond=0, tzinfo=timezone.utc)
    try:
        datetime.strptime(f"{date[:4]}-{date[4:6]}-{date[6:]} {time[:2]}:{time[2:4]}:"
                          f"{time[4:]}", "%Y-%m-%d %H:%M:%S")  # separators: no guessing
        valid = True
    except ValueError:
        valid = False
    assert (parse_session_id(f"VM_A_{date}_{time}_ABCDEF12") is not None) == valid


def test_session_id_refuses_non_ascii_digits() -> None:
    assert parse_session_id("VM_A_٢٠٢٥٠١٠١_120000_ABCDEF12") is None


def test_order_ids_are_uuid4() -> None:
    ids = {_order_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122


@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_from_minor_is_its_definition(minor: int) -> None:
    from hub.money import from_minor
    slow = (Decimal(minor) / 100).quantize(Decimal("0.01"))
    fast = from_minor(minor)
    assert fast == slow and str(fast) == str(slow)


@given(st.text(alphabet="VM_0123456789AZaz-", max_size=40))
def test_parse_session_id_memo_answers_as_the_first_time(value: str) -> None:
    from hub.ids import parse_session_id
    first = parse_session_id.__wrapped__(value)
    assert parse_session_id(value) == first and parse_session_id(value) == first
