"""CONTRACT §2 against the pure lifecycle module (``hub.lifecycle``), no server.

A hypothesis state machine drives one session through every command with a fake clock
that only moves forward (sometimes far past a deadline). Each step is checked twice:
against generic invariants (progress never rewinds, terminal statuses are final, ``seq``
is gapless, a no-op changes nothing, deadlines move only with phone events, a refusal
changes nothing but an overdue expiry) and against an independent model of the contract
(which refusal, which event, which state). Plain example tests pin the specific rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from msgspec.structs import replace
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from hub import lifecycle as L
from hub.clock import iso
from hub.lifecycle import (
    ACTIVE,
    CANCELLED,
    DESIGNING,
    EXPIRED,
    PAYMENT_COMPLETED,
    PAYMENT_PENDING,
    PHONE_PROGRESS,
    PROGRESS,
    TERMINAL,
    Order,
    Outcome,
    Payment,
    Policy,
    Session,
)

POLICY = Policy()  # production timings: 1 minute = 60 000 ms, payment deadline 5 minutes
MINUTE = POLICY.minute_ms
PAY_TIMEOUT = POLICY.payment_timeout_ms
T0 = 1_737_644_422_000  # 2025-01-23T15:00:22.000Z
MACHINE = "VM_LONDON_01"
SID = "VM_LONDON_01_20250123_150022_X9Y8Z7AB"
LIST_PRICE = 1999
RANK = {p: i for i, p in enumerate(PROGRESS)}
PHONE_VALUES = sorted(PHONE_PROGRESS, key=RANK.__getitem__)
PHONE_ACTIONS = ("register", "progress", "order_summary")

EXPIRED_410 = (410, "Session has expired")
CANCELLED_410 = (410, "Session has been cancelled")
PAID_409 = (409, "Payment already confirmed")
NOT_READY_409 = (409, "Session not ready for payment confirmation")
TXN_USED_409 = (409, "Transaction ID already used")
AMOUNT_400 = (400, "Payment amount does not match order total")
CLAIMED_409 = (409, "Session already claimed")
ORDER_STATE_409 = (409, "Invalid session state for order summary")


def new(timeout: int = 30, now: int = T0) -> Session:
    out = L.new_session(SID, MACHINE, {"id": MACHINE, "name": "London 01", "location": None},
                        None, None, timeout, now, POLICY)
    assert out.refusal is None and len(out.events) == 1
    return out.session


def order(n: int = 1, amount: int = LIST_PRICE) -> Order:
    return Order(f"order-{n}", {"brand": "iPhone", "model": "iPhone 15 Pro"}, amount, "GBP")


def payment(txn: str = "TXN1", amount: int = LIST_PRICE, scope: str = MACHINE,
            method: str = "card", at: int = T0, currency: str = "GBP") -> Payment:
    return Payment(scope, txn, method, amount, currency, at, {"card_last_four": "1234"})


def ok(out: Outcome, *events: str) -> Session:
    """Assert ``out`` succeeded with exactly ``events``; return its session."""
    assert out.refusal is None, out.refusal
    assert [e.event for e in out.events] == list(events)
    return out.session


def refused(out: Outcome, code: int, detail: str) -> None:
    assert out.refusal is not None, f"expected {code} {detail!r}, got success {out}"
    assert (out.refusal.status, out.refusal.detail) == (code, detail)


def designing(now: int = T0, token: str = "tok-1") -> Session:
    return ok(L.register(new(now=now), None, token, False, now, POLICY), "phone.registered")


def pending(now: int = T0, amount: int = LIST_PRICE) -> Session:
    s = designing(now)
    for step in ("brand_selected", "design_complete", "payment_reached"):
        s = ok(L.progress(s, step, now, POLICY), "progress")
    return ok(L.order_summary(s, order(1, amount), None, now, POLICY), "order.summary")


def paid(now: int = T0) -> Session:
    return ok(L.pay(pending(now), payment("TXN1", at=now), now), "payment.completed")


# ---------------------------------------------------------------------------------------
# The model: CONTRACT §1-§3 written out independently of hub.lifecycle.
# ---------------------------------------------------------------------------------------
@dataclass
class Model:
    status: str
    user_progress: str
    phone_token: str | None
    order: Order | None
    payment: Payment | None
    expires_at: int
    last_activity: int
    seq: int
    timeout_minutes: int

    def overdue(self, now: int) -> bool:
        return self.status not in TERMINAL and now >= self.expires_at

    def expire_now(self) -> list[str]:
        self.status = EXPIRED
        self.seq += 1
        return ["session.expired"]

    def write_gate(self, now: int) -> tuple[tuple[int, str], list[str]] | None:
        """CONTRACT §1 "writes to a finished session"; an overdue one expires first."""
        if self.overdue(now):
            return EXPIRED_410, self.expire_now()
        if self.status == EXPIRED:
            return EXPIRED_410, []
        if self.status == CANCELLED:
            return CANCELLED_410, []
        if self.status == PAYMENT_COMPLETED:
            return PAID_409, []
        return None

    def phone_event(self, now: int, name: str) -> list[str]:
        """A phone action that changes the session moves the deadline (CONTRACT §1, §2)."""
        self.seq += 1
        self.last_activity = now
        self.expires_at = now + (PAY_TIMEOUT if self.status == PAYMENT_PENDING
                                 else self.timeout_minutes * MINUTE)
        return [name]


Expect = tuple[tuple[int, str] | None, list[str]]


class LifecycleMachine(RuleBasedStateMachine):
    """One session, every command, a forward-only fake clock."""

    def __init__(self) -> None:
        super().__init__()
        self.s: Session
        self.m: Model
        self.now = T0
        self.log: list[L.Event] = []
        self.tokens = 0
        self.orders = 0
        self.first_terminal: str | None = None
        self.terminal_snapshot: Session | None = None

    # -- setup --------------------------------------------------------------------------
    @initialize(timeout=st.integers(1, 120), start=st.integers(0, 10**9))
    def create(self, timeout: int, start: int) -> None:
        self.now = T0 + start
        out = L.new_session(SID, MACHINE, {"id": MACHINE}, "Shop 1", {"k": "v"}, timeout,
                            self.now, POLICY)
        assert out.refusal is None
        assert [(e.event, e.seq, e.at) for e in out.events] == [
            ("session.created", 1, self.now)]
        s = out.session
        assert (s.status, s.user_progress, s.seq) == (ACTIVE, "started", 1)
        assert s.created_at == s.last_activity == self.now
        assert s.expires_at == self.now + timeout * MINUTE
        assert out.events[0].data["expires_at"] == iso(s.expires_at)
        self.s = s
        self.log = list(out.events)
        self.m = Model(ACTIVE, "started", None, None, None, s.expires_at, self.now, 1, timeout)

    # -- the checks shared by every step --------------------------------------------------
    def apply(self, out: Outcome, expect: Expect, action: str) -> None:
        old, new_s = self.s, out.session
        want_refusal, want_events = expect

        # generic invariants
        assert RANK[new_s.user_progress] >= RANK[old.user_progress], \
            f"user_progress rewound {old.user_progress} -> {new_s.user_progress}"
        if old.status in TERMINAL:
            assert new_s == old and not out.events, f"{action} changed a {old.status} session"
        for i, ev in enumerate(out.events):
            assert ev.seq == old.seq + 1 + i, "seq not gapless"
            assert ev.session_id == old.session_id and ev.at == self.now
        if out.events:
            last = out.events[-1]
            assert new_s.seq == last.seq
            assert (last.status, last.user_progress) == (new_s.status, new_s.user_progress)
        else:
            assert new_s == old, f"{action}: an outcome without events changed the session"
        for f in ("session_id", "machine_id", "created_at", "timeout_minutes", "location",
                  "metadata", "machine_info"):
            assert getattr(new_s, f) == getattr(old, f), f"{action} changed {f}"
        phone_event = action in PHONE_ACTIONS and any(
            e.event != "session.expired" for e in out.events)
        if not phone_event:
            assert new_s.expires_at == old.expires_at, f"{action} moved expires_at"
            assert new_s.last_activity == old.last_activity, f"{action} moved last_activity"
        if out.refusal is not None:
            if out.events:
                assert [e.event for e in out.events] == ["session.expired"]
                assert new_s == replace(old, status=EXPIRED, seq=old.seq + 1)
            else:
                assert new_s == old
        for ev in out.events:
            if ev.event != "order.summary" and "expires_at" in ev.data:
                assert ev.data["expires_at"] == iso(new_s.expires_at)

        # the model
        got_refusal = None if out.refusal is None else (out.refusal.status,
                                                        out.refusal.detail)
        assert got_refusal == want_refusal, f"{action}: {got_refusal} != {want_refusal}"
        assert [e.event for e in out.events] == want_events, action
        m = self.m
        assert (new_s.status, new_s.user_progress, new_s.phone_token, new_s.order,
                new_s.payment, new_s.expires_at, new_s.last_activity, new_s.seq) == (
            m.status, m.user_progress, m.phone_token, m.order, m.payment, m.expires_at,
            m.last_activity, m.seq), action

        self.s = new_s
        self.log.extend(out.events)

    # -- phone ----------------------------------------------------------------------------
    @rule(who=st.sampled_from(["same", "other", "none"]), open_mode=st.booleans())
    def register(self, who: str, open_mode: bool) -> None:
        self.tokens += 1
        fresh = f"tok-{self.tokens}"
        token = {"same": self.s.phone_token, "other": "tok-stranger", "none": None}[who]
        out = L.register(self.s, token, fresh, open_mode, self.now, POLICY)
        m = self.m
        expect: Expect
        if (gate := m.write_gate(self.now)) is not None:
            expect = (gate[0], gate[1])
        elif m.phone_token is None:
            m.phone_token = fresh
            m.status = DESIGNING if m.status == ACTIVE else m.status
            if RANK[m.user_progress] < RANK["qr_scanned"]:
                m.user_progress = "qr_scanned"
            expect = (None, m.phone_event(self.now, "phone.registered"))
        elif token == m.phone_token or (open_mode and token is None):
            expect = (None, [])
        else:
            expect = (CLAIMED_409, [])
        self.apply(out, expect, "register")

    @rule(value=st.sampled_from(PHONE_VALUES))
    def progress(self, value: str) -> None:
        out = L.progress(self.s, value, self.now, POLICY)
        m = self.m
        expect: Expect
        if (gate := m.write_gate(self.now)) is not None:
            expect = (gate[0], gate[1])
        elif RANK[value] <= RANK[m.user_progress]:
            expect = (None, [])  # a repeated or older value is a no-op 200
        else:
            m.user_progress = value
            m.status = DESIGNING if m.status == ACTIVE else m.status
            expect = (None, m.phone_event(self.now, "progress"))
        self.apply(out, expect, "progress")

    @rule(amount=st.sampled_from([LIST_PRICE, 2499, 1]), image=st.booleans())
    def order_summary(self, amount: int, image: bool) -> None:
        self.orders += 1
        o = order(self.orders, amount)
        url = f"/api/vending/session/{SID}/design-image" if image else None
        out = L.order_summary(self.s, o, url, self.now, POLICY)
        m = self.m
        expect: Expect
        if (gate := m.write_gate(self.now)) is not None:
            expect = (gate[0], gate[1])
        elif m.status not in (DESIGNING, PAYMENT_PENDING):
            expect = (ORDER_STATE_409, [])
        else:
            m.order = o
            m.status = m.user_progress = PAYMENT_PENDING
            expect = (None, m.phone_event(self.now, "order.summary"))
        self.apply(out, expect, "order_summary")
        if expect[1] == ["order.summary"]:
            data = out.events[0].data
            assert data["order_id"] == o.order_id
            assert data["order_data"].get("design_image_url") == url

    # -- machine and app --------------------------------------------------------------------
    @rule(app=st.booleans(), txn=st.sampled_from(["T1", "T2", "T3"]),
          amount=st.sampled_from(["right", "list", "wrong"]),
          method=st.sampled_from(["card", "cash"]),
          app_order=st.sampled_from([None, LIST_PRICE, 2499]))
    def pay(self, app: bool, txn: str, amount: str, method: str,
            app_order: int | None) -> None:
        m = self.m
        a_order = None
        if app and app_order is not None:
            self.orders += 1
            a_order = order(self.orders, app_order)
        due_order = m.order if m.order is not None else a_order
        right = due_order.amount_minor if due_order is not None else LIST_PRICE
        value = {"right": right, "list": LIST_PRICE, "wrong": right + 1}[amount]
        scope = "app" if app else MACHINE
        p = Payment(scope, txn, "app" if app else method, value, "GBP", self.now,
                    {"n": self.now})
        out = L.pay(self.s, p, self.now, a_order if app else None,
                    (LIST_PRICE, "GBP") if app else None)
        expect: Expect
        prior = m.payment
        if prior is not None and (prior.scope, prior.transaction_id) == (scope, txn):
            if (prior.method, prior.amount_minor, prior.currency) == (
                    p.method, p.amount_minor, p.currency):
                expect = (None, [])  # the same request again: same 200, nothing new
            else:
                expect = (TXN_USED_409, [])
        elif (gate := m.write_gate(self.now)) is not None:
            expect = (gate[0], gate[1])
        elif not (m.status == PAYMENT_PENDING or (app and m.status == DESIGNING)):
            expect = (NOT_READY_409, [])
        else:
            o = m.order if m.order is not None else (a_order if app else None)
            due = o.amount_minor if o is not None else LIST_PRICE
            if value != due:
                expect = (AMOUNT_400, [])
            else:
                m.status = m.user_progress = PAYMENT_COMPLETED
                m.payment = p
                m.order = o
                m.seq += 1
                expect = (None, ["payment.completed"])
        self.apply(out, expect, "pay")

    @rule()
    def cancel(self) -> None:
        out = L.cancel(self.s, self.now)
        m = self.m
        expect: Expect
        if m.overdue(self.now):
            expect = (None, m.expire_now())  # finished by its deadline: 200 "expired"
        elif m.status in TERMINAL:
            expect = (None, [])
        else:
            m.status = CANCELLED
            m.seq += 1
            expect = (None, ["session.cancelled"])
        self.apply(out, expect, "cancel")

    @rule()
    def expire(self) -> None:
        out = L.expire(self.s, self.now)
        m = self.m
        expect: Expect = (None, m.expire_now() if m.overdue(self.now) else [])
        self.apply(out, expect, "expire")

    @rule()
    def check_expiry(self) -> None:
        found = L.check_expiry(self.s, self.now)
        if self.m.overdue(self.now):
            assert found is not None
            expect: Expect = (None, self.m.expire_now())
            self.apply(found, expect, "check_expiry")
        else:
            assert found is None

    # -- the clock ------------------------------------------------------------------------
    @rule(ms=st.integers(0, 40 * MINUTE))
    def tick(self, ms: int) -> None:
        self.now += ms

    @rule(ms=st.integers(0, 5 * 3600_000))
    def jump(self, ms: int) -> None:
        self.now += ms

    @rule(offset=st.integers(-2, 2))
    def to_deadline(self, offset: int) -> None:
        self.now = max(self.now, self.s.expires_at + offset)

    # -- invariants over the whole history ------------------------------------------------
    @invariant()
    def seq_gapless(self) -> None:
        assert [e.seq for e in self.log] == list(range(1, len(self.log) + 1))
        assert self.s.seq == len(self.log)

    @invariant()
    def progress_never_rewinds(self) -> None:
        ranks = [RANK[e.user_progress] for e in self.log]
        assert ranks == sorted(ranks)

    @invariant()
    def terminal_is_final(self) -> None:
        if self.first_terminal is None and self.s.status in TERMINAL:
            self.first_terminal = self.s.status
            self.terminal_snapshot = self.s
        if self.first_terminal is not None:
            assert self.s == self.terminal_snapshot
            assert self.log[-1].status == self.first_terminal
            assert sum(e.status in TERMINAL for e in self.log) == 1

    @invariant()
    def status_and_progress_agree(self) -> None:
        s = self.s
        if s.status == ACTIVE:
            assert s.user_progress == "started"
        elif s.status == DESIGNING:
            assert s.user_progress in PHONE_PROGRESS and s.user_progress != "started"
        elif s.status == PAYMENT_PENDING:
            assert s.user_progress == PAYMENT_PENDING and s.order is not None
        elif s.status == PAYMENT_COMPLETED:
            assert s.user_progress == PAYMENT_COMPLETED and s.payment is not None
        if s.status != PAYMENT_COMPLETED:
            assert s.payment is None


LifecycleMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestLifecycle = LifecycleMachine.TestCase


# ---------------------------------------------------------------------------------------
# Example tests: one contract rule each.
# ---------------------------------------------------------------------------------------
def test_new_session_starts_active_with_seq_1() -> None:
    s = new(timeout=7)
    assert (s.status, s.user_progress, s.seq, s.phone_token) == (ACTIVE, "started", 1, None)
    assert s.expires_at == T0 + 7 * MINUTE


def test_register_binds_and_moves_to_designing() -> None:
    s = new()
    out = L.register(s, None, "tok-1", False, T0 + 1000, POLICY)
    s2 = ok(out, "phone.registered")
    assert (s2.status, s2.user_progress, s2.phone_token, s2.seq) == (
        DESIGNING, "qr_scanned", "tok-1", 2)
    assert s2.expires_at == T0 + 1000 + 30 * MINUTE
    assert s2.last_activity == T0 + 1000


@pytest.mark.parametrize("open_mode", [False, True])
def test_register_same_phone_again_is_noop(open_mode: bool) -> None:
    s = designing()
    s = ok(L.progress(s, "design_complete", T0, POLICY), "progress")
    out = L.register(s, "tok-1", "tok-2", open_mode, T0 + 5000, POLICY)
    assert ok(out) == s  # nothing rewinds, the deadline stays


def test_register_without_token_open_mode_is_noop_keys_mode_claimed() -> None:
    s = designing()
    assert ok(L.register(s, None, "tok-2", True, T0 + 1, POLICY)) == s
    out = L.register(s, None, "tok-2", False, T0 + 1, POLICY)
    refused(out, *CLAIMED_409)
    assert out.session == s and not out.events


@pytest.mark.parametrize("open_mode", [False, True])
def test_register_other_phone_is_claimed(open_mode: bool) -> None:
    s = designing()
    out = L.register(s, "tok-other", "tok-2", open_mode, T0 + 1, POLICY)
    refused(out, *CLAIMED_409)
    assert out.session == s


def test_repeated_progress_is_noop() -> None:
    s = ok(L.progress(designing(), "design_complete", T0 + 10, POLICY), "progress")
    for value in ("design_complete", "brand_selected", "qr_scanned", "started"):
        out = L.progress(s, value, T0 + 60_000, POLICY)
        assert ok(out) == s, value
    assert s.expires_at == T0 + 10 + 30 * MINUTE  # a no-op leaves the deadline


def test_progress_moves_deadline_from_last_activity() -> None:
    s = designing(T0)
    s = ok(L.progress(s, "brand_selected", T0 + 29 * MINUTE, POLICY), "progress")
    assert s.expires_at == T0 + 59 * MINUTE
    assert s.last_activity == T0 + 29 * MINUTE
    assert ok(L.progress(s, "design_complete", T0 + 58 * MINUTE, POLICY), "progress")


def test_order_summary_sets_payment_pending_and_five_minute_deadline() -> None:
    s = designing()
    s = ok(L.order_summary(s, order(1), None, T0 + 1000, POLICY), "order.summary")
    assert (s.status, s.user_progress) == (PAYMENT_PENDING, PAYMENT_PENDING)
    assert s.expires_at == T0 + 1000 + PAY_TIMEOUT
    refused(L.pay(s, payment(), T0 + 1000 + PAY_TIMEOUT), *EXPIRED_410)
    ok(L.pay(s, payment(), T0 + 999 + PAY_TIMEOUT), "payment.completed")


def test_order_summary_replace_while_pending_gives_new_order() -> None:
    s = pending(T0)
    first = s.order
    assert first is not None
    out = L.order_summary(s, order(2, 2499), None, T0 + 60_000, POLICY)
    s2 = ok(out, "order.summary")
    assert s2.order is not None and s2.order.order_id != first.order_id
    assert s2.order.amount_minor == 2499
    assert s2.seq == s.seq + 1 and s2.status == PAYMENT_PENDING
    assert s2.expires_at == T0 + 60_000 + PAY_TIMEOUT
    assert out.events[0].data["order_id"] == "order-2"
    refused(L.pay(s2, payment(amount=LIST_PRICE), T0 + 60_001), *AMOUNT_400)
    ok(L.pay(s2, payment(amount=2499), T0 + 60_001), "payment.completed")


def test_order_summary_before_designing_refused() -> None:
    out = L.order_summary(new(), order(), None, T0, POLICY)
    refused(out, *ORDER_STATE_409)
    assert out.session == new() and not out.events


def test_pay_idempotent_on_same_transaction() -> None:
    s = paid()
    for now in (T0 + 1, T0 + 10 * 3600_000):  # even long after the old deadline
        out = L.pay(s, payment("TXN1", at=now), now)
        assert ok(out) == s
    assert s.payment is not None and s.payment.transaction_id == "TXN1"


@pytest.mark.parametrize("change", [{"amount": 2499}, {"method": "cash"},
                                    {"currency": "EUR"}])
def test_same_transaction_different_request_is_already_used(change: dict[str, Any]
                                                            ) -> None:
    s = paid()
    out = L.pay(s, payment("TXN1", **change), T0 + 1)
    refused(out, *TXN_USED_409)
    assert out.session == s and not out.events


def test_other_transaction_on_paid_session() -> None:
    s = paid()
    for p in (payment("TXN2"), payment("TXN2", amount=1),
              payment("TXN1", scope="app", method="app")):
        out = L.pay(s, p, T0 + 1)
        refused(out, *PAID_409)
        assert out.session == s and not out.events


@pytest.mark.parametrize("build", ["new", "designing", "progress"])
def test_confirm_before_payment_pending(build: str) -> None:
    s = {"new": new, "designing": designing,
         "progress": lambda: ok(L.progress(designing(), "payment_reached", T0, POLICY),
                                "progress")}[build]()
    out = L.pay(s, payment(), T0 + 1)
    refused(out, *NOT_READY_409)
    assert out.session == s and not out.events


def test_wrong_amount_refused() -> None:
    s = pending(amount=LIST_PRICE)
    for amount in (LIST_PRICE - 1, LIST_PRICE + 1, 1):
        out = L.pay(s, payment(amount=amount), T0 + 1)
        refused(out, *AMOUNT_400)
        assert out.session == s and not out.events
    # the refused id is not burnt: the right amount with it then succeeds
    ok(L.pay(s, payment(amount=LIST_PRICE), T0 + 2), "payment.completed")


def test_app_payment_from_designing_uses_list_price_or_app_order() -> None:
    s = designing()
    app = payment("APP1", scope="app", method="app")
    listed = (LIST_PRICE, "GBP")
    ok(L.pay(s, app, T0 + 1, None, listed), "payment.completed")
    refused(L.pay(s, replace(app, amount_minor=2499), T0 + 1, None, listed),
            *AMOUNT_400)
    refused(L.pay(s, replace(app, currency="EUR"), T0 + 1, None, listed),
            *AMOUNT_400)  # the right number in another currency is not the price
    done = ok(L.pay(s, replace(app, amount_minor=2499), T0 + 1, order(9, 2499),
                    listed), "payment.completed")
    assert done.order is not None and done.order.order_id == "order-9"
    refused(L.pay(new(), app, T0 + 1, None, listed), *NOT_READY_409)


def _writes(s: Session, now: int) -> dict[str, Outcome]:
    return {
        "register": L.register(s, None, "tok-9", False, now, POLICY),
        "register_same": L.register(s, s.phone_token, "tok-9", True, now, POLICY),
        "progress": L.progress(s, "payment_reached", now, POLICY),
        "order_summary": L.order_summary(s, order(5), None, now, POLICY),
        "pay": L.pay(s, payment("TXN9"), now),
        "app_pay": L.pay(s, payment("APP9", scope="app", method="app"), now, None,
                         (LIST_PRICE, "GBP")),
    }


@pytest.mark.parametrize("build", ["new", "designing", "pending"])
def test_writes_to_overdue_session_expire_it_then_410(build: str) -> None:
    s = {"new": new, "designing": designing, "pending": pending}[build]()
    for name, out in _writes(s, s.expires_at).items():
        refused(out, *EXPIRED_410)
        assert [e.event for e in out.events] == ["session.expired"], name
        assert out.events[0].seq == s.seq + 1
        assert out.session == replace(s, status=EXPIRED, seq=s.seq + 1), name


def test_writes_to_expired_session_410() -> None:
    s = designing()
    s = ok(L.expire(s, s.expires_at), "session.expired")
    for name, out in _writes(s, s.expires_at + 1).items():
        refused(out, *EXPIRED_410)
        assert out.session == s and not out.events, name
    assert ok(L.cancel(s, s.expires_at + 1)) == s


def test_writes_to_cancelled_session_410() -> None:
    s = ok(L.cancel(pending(), T0 + 1), "session.cancelled")
    assert s.status == CANCELLED
    for now in (T0 + 2, s.expires_at + 1):  # the deadline no longer matters
        for name, out in _writes(s, now).items():
            refused(out, *CANCELLED_410)
            assert out.session == s and not out.events, name
        assert ok(L.expire(s, now)) == s
        assert ok(L.cancel(s, now)) == s


def test_writes_to_paid_session_409() -> None:
    s = paid()
    outs = _writes(s, s.expires_at + 1)
    for name in ("register", "progress", "order_summary", "pay"):
        refused(outs[name], *PAID_409)
        assert outs[name].session == s and not outs[name].events, name
    assert ok(L.expire(s, s.expires_at + 10**9)) == s
    assert ok(L.cancel(s, s.expires_at + 10**9)) == s


def test_expiry_boundary() -> None:
    s = designing()
    assert L.check_expiry(s, s.expires_at - 1) is None
    assert ok(L.expire(s, s.expires_at - 1)) == s
    s2 = ok(L.expire(s, s.expires_at), "session.expired")
    assert s2.status == EXPIRED and s2.user_progress == "qr_scanned"
    assert s2.expires_at == s.expires_at and s2.last_activity == s.last_activity


def test_cancel_overdue_session_reports_expired_not_cancelled() -> None:
    s = designing()
    out = L.cancel(s, s.expires_at + 5)
    s2 = ok(out, "session.expired")
    assert s2.status == EXPIRED


def test_machine_calls_do_not_move_deadline() -> None:
    s = pending()
    for out in (L.pay(s, payment(amount=1), T0 + 100), L.expire(s, T0 + 100)):
        assert out.session.expires_at == s.expires_at
    c = ok(L.cancel(s, T0 + 100), "session.cancelled")
    assert (c.expires_at, c.last_activity) == (s.expires_at, s.last_activity)
    p = ok(L.pay(s, payment(), T0 + 100), "payment.completed")
    assert (p.expires_at, p.last_activity) == (s.expires_at, s.last_activity)
