"""Request bodies (msgspec Structs) and their decoding into clear 422 refusals.

CONTRACT §1: unknown extra fields are ignored; a known field with a wrong type is 422
with a ``detail`` naming the field; money is decoded exactly to ``Decimal`` and then to
integer minor units (:mod:`hub.money`). Refused *values* (machine id format, mismatches,
payment method) are 400s raised by the service, after ownership checks.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct

from .errors import HubError
from .money import MAX_MINOR, MIN_MINOR, AmountError, to_minor

__all__ = [
    "CreateSession", "RegisterUser", "Progress", "OrderSummary", "ConfirmPayment",
    "AppPayment", "decode", "amount", "is_null", "currency", "check_object_size",
    "check_json", "order_data",
]

T = TypeVar("T")

#: an absent (or ``null``) raw amount
NULL = msgspec.Raw(b"null")

TimeoutMinutes = Annotated[int, Meta(ge=1, le=120)]
Location = Annotated[str, Meta(max_length=200)]
TransactionId = Annotated[str, Meta(min_length=1, max_length=100)]


class CreateSession(Struct, forbid_unknown_fields=False):
    """``POST /create-session`` (CONTRACT §3)."""

    machine_id: str
    location: Location | None = None
    session_timeout_minutes: TimeoutMinutes = 30
    metadata: dict[str, Any] | None = None


class RegisterUser(Struct):
    """``POST /session/{id}/register-user``."""

    machine_id: str
    session_id: str
    location: str | None = None
    user_agent: str | None = None


class Progress(Struct):
    """``POST /session/{id}/progress``."""

    user_progress: str


class OrderSummary(Struct):
    """``POST /session/{id}/order-summary``: the guide's §3 payload."""

    order_data: dict[str, Any]
    session_id: str | None = None
    payment_amount: msgspec.Raw = msgspec.field(default_factory=lambda: NULL)
    currency: str | None = None


class ConfirmPayment(Struct):
    """``POST /session/{id}/confirm-payment``."""

    session_id: str
    payment_method: str
    payment_amount: msgspec.Raw
    transaction_id: TransactionId
    payment_data: dict[str, Any] | None = None


class AppPayment(Struct):
    """``POST /session/{id}/app-payment`` ("Pay on App")."""

    payment_amount: msgspec.Raw
    transaction_id: TransactionId
    currency: str | None = None
    order_data: dict[str, Any] | None = None


_PATH = re.compile(r" - at `\$\.?(.*)`$")


def decode(raw: bytes | Any, typ: type[T]) -> T:
    """Decode JSON bytes (or an already-decoded object, for socket ops) into ``typ``.

    Raises:
        HubError: 422 with a detail naming the field, e.g.
            ``Invalid session_timeout_minutes: Expected `int` >= 1``.
    """
    try:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            return msgspec.json.decode(raw, type=typ)
        return msgspec.convert(raw, typ)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _PATH.search(text)
        reason = text if m is None else text[: m.start()]
        where = "" if m is None else m.group(1)
        if reason.startswith("Object missing required field"):
            name = reason.split("`")[1]
            raise HubError(422, f"Missing required field: {where + '.' if where else ''}{name}") from None
        raise HubError(422, f"Invalid {where or 'body'}: {reason}") from None
    except msgspec.DecodeError:
        raise HubError(422, "Invalid JSON body") from None
    except RecursionError:
        raise HubError(422, "Invalid JSON body: nested too deeply") from None


_AMOUNT_STRING = re.compile(r"[0-9]{1,5}(?:\.[0-9]{1,2})?")
#: a plain amount as written by nearly every client (``19.99``, ``"19.99"``, ``20``)
_AMOUNT_PLAIN = re.compile(rb'("?)([0-9]{1,5})(?:\.([0-9]{1,2}))?\1')
_AMOUNT_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def is_null(raw: msgspec.Raw | None) -> bool:
    """True when an optional raw field was absent or ``null``."""
    return raw is None or bytes(raw).strip() == b"null"


def amount(raw: msgspec.Raw | None, field: str = "payment_amount") -> int:
    """The raw JSON of an amount → integer minor units (CONTRACT §1), or 422
    ``Invalid payment_amount: <why>``.

    A JSON number is read exactly from its text (``19.99``, ``1999e-2``); a string must be
    plain ASCII digits with at most two decimals (``"19.99"``): no sign, spaces,
    exponent, underscores or non-ASCII digits.
    """
    text = b"null" if raw is None else bytes(raw).strip()
    if text == b"null":
        raise HubError(422, f"Missing required field: {field}")
    plain = _AMOUNT_PLAIN.fullmatch(text)
    if plain is not None:  # exact integer arithmetic: the Decimal path gives the same
        units, cents = plain.group(2), plain.group(3) or b""
        minor = int(units) * 100 + int(cents.ljust(2, b"0"))
        if MIN_MINOR <= minor <= MAX_MINOR:
            return minor
    if text.startswith(b'"'):
        value = msgspec.json.decode(text)
        if not (isinstance(value, str) and _AMOUNT_STRING.fullmatch(value)):
            raise HubError(422, f"Invalid {field}: must be a decimal number such as 19.99")
        literal = value
    elif _AMOUNT_NUMBER.fullmatch(text):
        literal = text.decode()
    else:
        raise HubError(422, f"Invalid {field}: must be a decimal number such as 19.99")
    try:
        return to_minor(Decimal(literal))
    except AmountError as exc:
        raise HubError(422, f"Invalid {field}: {exc}") from None


_CURRENCY = re.compile(r"[A-Z]{3}")


def currency(value: str | None, default: str = "GBP") -> str:
    """An ISO 4217 code (three capital letters), default ``GBP``; else 422."""
    if value is None:
        return default
    if not _CURRENCY.fullmatch(value):
        raise HubError(422, "Invalid currency: expected an ISO 4217 code such as GBP")
    return value


MAX_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)
#: every digit to ``0``, the rest unchanged: a run of 19 digits becomes 19 zeros, which a
#: substring search finds in one pass (a regex tries every position: 8% of a socket op)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_ZEROS = b"0" * 19


def _plain(raw: Any) -> bool:
    """True when the JSON text ``raw`` cannot hold what :func:`check_json` refuses: at
    most MAX_DEPTH brackets in all, and no run of 19 digits (every integer of 18 digits
    or fewer fits in 64 bits). Conservative: brackets and digits in strings count too."""
    if not isinstance(raw, bytes):
        return False
    return raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH and \
        _NINETEEN_ZEROS not in raw.translate(_DIGITS_TO_ZERO)


def check_json(value: Any, field: str, raw: bytes | None = None) -> None:
    """Refuse (422) free-form JSON the hub would store and re-send but could not write
    back: nesting deeper than :data:`MAX_DEPTH`, integers outside 64 bits. ``raw``, the
    request body ``value`` came from, lets a plain body skip the walk."""
    if raw is not None and _plain(raw):
        return
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                raise HubError(422, f"Invalid {field}: nested deeper than {MAX_DEPTH}")
            items = v.values() if isinstance(v, dict) else v
            stack.extend((x, depth + 1) for x in items)
        elif isinstance(v, int) and not isinstance(v, bool) and not (
                _INT64[0] <= v <= _INT64[1]):
            raise HubError(422, f"Invalid {field}: integer out of 64-bit range")


def check_object_size(value: dict[str, Any] | None, field: str, limit: int = 4096,
                      raw: bytes | None = None) -> None:
    """Refuse with 422 an object whose JSON form is over ``limit`` bytes (default 4 KiB)
    or that :func:`check_json` refuses (``raw``: the body it came from)."""
    if value is None:
        return
    check_json(value, field, raw)
    if len(msgspec.json.encode(value)) > limit:
        raise HubError(422, f"Invalid {field}: larger than {limit // 1024} KiB")


_STRING_FIELDS = ("brand", "model", "color", "inputText", "selectedFont", "selectedTextColor")
_DATA_URL = re.compile(r"data:(image/(?:png|jpeg|jpg|webp|gif));base64,([A-Za-z0-9+/=\s]*)", re.S)


def order_data(value: dict[str, Any], field: str = "order_data", raw: bytes | None = None
               ) -> tuple[dict[str, Any], tuple[str, bytes] | None]:
    """Check the guide's ``order_data`` and split off its design image.

    Known fields must have their types (strings, ``template`` an object with string
    ``id``/``name``); other fields pass through untouched. ``designImage`` must be a
    ``data:image/...;base64,`` URL.

    Returns:
        (order_data without ``designImage``, (mime type, image bytes) or None).
    Raises:
        HubError: 422 naming the field.
    """
    check_json(value, field, raw)
    data = dict(value)
    for key in _STRING_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise HubError(422, f"Invalid {field}.{key}: Expected `str`")
    template = data.get("template")
    if template is not None and not (
            isinstance(template, dict)
            and all(isinstance(template.get(k), (str, type(None))) for k in ("id", "name"))):
        raise HubError(422, f"Invalid {field}.template: Expected an object with `id`, `name`")
    image = data.pop("designImage", None)
    if image is None:
        return data, None
    m = _DATA_URL.fullmatch(image) if isinstance(image, str) else None
    if m is None:
        raise HubError(422, f"Invalid {field}.designImage: Expected a data:image/...;base64 URL")
    try:
        raw = base64.b64decode("".join(m.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        raise HubError(422, f"Invalid {field}.designImage: bad base64") from None
    mime = "image/jpeg" if m.group(1) == "image/jpg" else m.group(1)
    return data, (mime, raw)
