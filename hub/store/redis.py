"""The Redis store: shared state for many hub instances (``HUB_REDIS_URL``).

Keys, all under ``HUB_REDIS_PREFIX`` (default ``hub:``):

==================  ===========================================================
``s:{sid}``         the session's state (msgspec JSON of :class:`~hub.lifecycle.Session`)
``ev:{sid}``        its event history: a Stream, entry id ``0-{seq}``, field ``f`` = frame,
                    capped near :data:`STREAM_MAXLEN` entries
``img:{sid}``       the design image (hash: ``mime``, ``data``)
``tok:{token}``     phone token → session id
``pay:{scope}:{t}`` payment idempotency key → session id
``due``             sorted set of open sessions by deadline (the sweepers read it)
``ms:{machine}``    sorted set of a machine's open sessions by creation time
``m:{machine}``     a machine (JSON); ``mk:{key hash}`` → machine id; ``machines`` (set)
``ob:q:{machine}``  the machine's pending webhooks, oldest first (``{sid}|{seq}``);
                    ``ob:meta`` (hash: url, attempts, created), ``ob:due`` (sorted set
                    of machines by next attempt), ``ob:lock:{machine}`` (the lease)
==================  ===========================================================

Every transition is one call of the script ``lua/commit.lua`` (``EVALSHA``): the pure
lifecycle decides on the state as read, and the script commits the new state, its events
(``XADD``), the payment key, the indexes and the ``PUBLISH`` of each frame together, only
if the state is still the one decided on (compare-and-set on its bytes). Two instances
racing on a session: one commit wins, the other reads again and decides again on the
winner's state. A command therefore costs two round trips, its read and its commit (the
read its checks made is reused). When a session ends, its keys get a TTL of
``retention_s`` (default 7 days). The script names keys it is not given in ``KEYS``:
one Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import msgspec
from redis.asyncio import Redis

from ..broker import machine_channel, session_channel
from ..codec import event_frame
from ..errors import HubError
from ..lifecycle import NOTIFY_EVENTS, Outcome, Session
from ..machines import Machine
from . import Committed, Decide, Delivery, Publish, deliver_here

__all__ = ["RedisStore", "STREAM_MAXLEN"]

#: events kept per session at least (CONTRACT §4 asks for 200)
STREAM_MAXLEN = 1000
_MAX_TRIES = 1000

_COMMIT = files(__package__).joinpath("lua", "commit.lua").read_text()
_SEEN_MAX = 4096  #: states kept from reads for the commit that usually follows

_enc = msgspec.json.Encoder()
_dec_session = msgspec.json.Decoder(Session)
_dec_machine = msgspec.json.Decoder(Machine)


class RedisStore:
    """:class:`~hub.store.Store` on Redis.

    Args:
        redis: a ``redis.asyncio.Redis`` client (bytes replies); prefix: key prefix.
        retention_s: how long a finished session's keys are kept, seconds.
        publish: ``(channel, frame)`` → None: hands every committed event to this
            instance's own sockets at once, on its session's and machine's channels
            (:meth:`hub.broker.Broker.deliver_here`); the copy that comes back through
            Redis is dropped by ``seq``.
    """

    name = "redis"

    def __init__(self, redis: Redis, prefix: str = "hub:", retention_s: int = 7 * 86400,
                 publish: Publish | None = None) -> None:
        self.redis, self.prefix, self.retention_s = redis, prefix, retention_s
        self.publish = publish
        self._commit = redis.register_script(_COMMIT)
        #: session id → state bytes last read here: the commit after a command's checks
        #: decides on them instead of reading again (a stale one only costs a retry)
        self._seen: dict[str, bytes] = {}

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def open(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        return None  # the client is owned and closed by the app

    async def ping(self) -> None:
        await self.redis.ping()

    # -- machines -------------------------------------------------------------------
    async def add_machine(self, m: Machine) -> None:
        old = await self.machine(m.machine_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if old is not None and old.key_hash and old.key_hash != m.key_hash:
                pipe.delete(self.k("mk", old.key_hash))
            pipe.set(self.k("m", m.machine_id), _enc.encode(m))
            if m.key_hash:
                pipe.set(self.k("mk", m.key_hash), m.machine_id)
            pipe.sadd(self.k("machines"), m.machine_id)
            await pipe.execute()

    async def machine(self, machine_id: str) -> Machine | None:
        raw = await self.redis.get(self.k("m", machine_id))
        return None if raw is None else _dec_machine.decode(raw)

    async def machine_by_key(self, key_hash: str) -> Machine | None:
        mid = await self.redis.get(self.k("mk", key_hash))
        return None if mid is None else await self.machine(mid.decode())

    async def machines(self) -> list[Machine]:
        ids = sorted(m.decode() for m in await self.redis.smembers(self.k("machines")))
        found = [await self.machine(mid) for mid in ids]
        return [m for m in found if m is not None]

    # -- sessions -------------------------------------------------------------------
    def _writes(self, before: Session | None, outcome: Outcome,
                image: tuple[str, bytes] | None) -> tuple[list[Any], tuple[bytes, ...], bytes]:
        """Everything one outcome writes, flattened for ``commit.lua`` (``<count>
        <command> <arguments…>`` each); with its frames and the new state's bytes."""
        out: list[Any] = []

        def w(*command: Any) -> None:
            out.append(len(command))
            out.extend(command)

        s = outcome.session
        sid = s.session_id
        state = _enc.encode(s)
        w("SET", self.k("s", sid), state)
        frames = tuple(event_frame(ev) for ev in outcome.events)
        for ev, frame in zip(outcome.events, frames):
            w("XADD", self.k("ev", sid), "MAXLEN", "~", STREAM_MAXLEN, f"0-{ev.seq}",
              "f", frame)
        if s.phone_token and (before is None or before.phone_token is None):
            w("SET", self.k("tok", s.phone_token), sid)
        if s.payment is not None and (before is None or before.payment is None):
            w("SET", self.k("pay", s.payment.scope, s.payment.transaction_id), sid)
        if any(ev.event == "order.summary" for ev in outcome.events):
            if image is None:
                w("DEL", self.k("img", sid))
            else:
                w("HSET", self.k("img", sid), "mime", image[0], "data", image[1])
        if s.finished:
            w("ZREM", self.k("due"), sid)
            w("ZREM", self.k("ms", s.machine_id), sid)
            for key in ("s", "ev", "img"):
                w("EXPIRE", self.k(key, sid), self.retention_s)
            for key in (("tok", s.phone_token) if s.phone_token else None,
                        ("pay", s.payment.scope, s.payment.transaction_id)
                        if s.payment else None):
                if key:
                    w("EXPIRE", self.k(*key), self.retention_s)
        else:
            w("ZADD", self.k("due"), s.expires_at, sid)
            if before is None:
                w("ZADD", self.k("ms", s.machine_id), s.created_at, sid)
        if s.callback_url:
            for ev in outcome.events:
                if ev.event in NOTIFY_EVENTS:
                    member = f"{sid}|{ev.seq}"
                    w("RPUSH", self.k("ob", "q", s.machine_id), member)
                    w("HSET", self.k("ob", "meta"), member, _enc.encode(
                        {"url": s.callback_url, "attempts": 0, "created": ev.at}))
                    w("ZADD", self.k("ob", "due"), "NX", ev.at, s.machine_id)
        for frame in frames:
            w("PUBLISH", self.prefix + session_channel(sid), frame)
            w("PUBLISH", self.prefix + machine_channel(s.machine_id), frame)
        return out, frames, state

    def _published(self, outcome: Outcome, frames: tuple[bytes, ...]) -> Committed:
        """The script published ``frames`` to every instance; hand them to this one's
        sockets now too (before the command answers)."""
        deliver_here(self.publish, outcome, frames)
        return Committed(outcome, frames, published=True)

    def _saw(self, session_id: str, raw: bytes) -> None:
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen[session_id] = raw

    async def create(self, outcome: Outcome) -> Committed:
        sid = outcome.session.session_id
        writes, frames, state = self._writes(None, outcome, None)
        verdict = await self._commit(keys=[self.k("s", sid)], args=["", "", sid, *writes])
        if verdict != b"ok":
            raise HubError(409, "Session already exists")
        self._saw(sid, state)
        return self._published(outcome, frames)

    async def load(self, session_id: str, recent_ok: bool = False) -> Session | None:
        raw = self._seen.get(session_id) if recent_ok else None
        if raw is not None:  # a command: commit.lua's compare-and-set catches a stale copy
            return _dec_session.decode(raw)
        raw = await self.redis.get(self.k("s", session_id))
        if raw is None:
            return None
        self._saw(session_id, raw)
        return _dec_session.decode(raw)

    async def session_for_token(self, phone_token: str) -> str | None:
        sid = await self.redis.get(self.k("tok", phone_token))
        return None if sid is None else sid.decode()

    async def apply(self, session_id: str, decide: Decide,
                    image: tuple[str, bytes] | None = None) -> Committed:
        key = self.k("s", session_id)
        raw = self._seen.pop(session_id, None)
        for _ in range(_MAX_TRIES):
            stored = raw is None  # else a copy kept from an earlier read or commit
            if raw is None:
                raw = await self.redis.get(key)
                if raw is None:
                    raise HubError(404, "Session not found")
            current = _dec_session.decode(raw)
            outcome = decide(current)
            if not outcome.events:
                # nothing to commit, so no compare-and-set: a no-op or refusal decided on
                # a kept copy is only answered if the copy is still the stored state
                if not stored and await self.redis.get(key) != raw:
                    raw = None
                    continue
                return Committed(outcome, (), published=True)
            p = outcome.session.payment
            pay_key = self.k("pay", p.scope, p.transaction_id) \
                if p is not None and current.payment is None else ""
            writes, frames, state = self._writes(current, outcome, image)
            verdict = await self._commit(keys=[key], args=[raw, pay_key, session_id, *writes])
            if verdict == b"ok":
                self._saw(session_id, state)
                return self._published(outcome, frames)
            if verdict == b"paid":
                raise HubError(409, "Transaction ID already used")
            raw = None  # stale: read the winner's state and decide again
        raise HubError(409, "Session is too busy; try again")

    async def events_after(self, session_id: str, seq: int) -> list[bytes] | None:
        start = "-" if seq <= 0 else f"(0-{seq}"
        # history and state read in one MULTI: a commit cannot fall between the two
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xrange(self.k("ev", session_id), start, "+")
            pipe.get(self.k("s", session_id))
            entries, raw = await pipe.execute()
        if entries:
            first = int(entries[0][0].split(b"-")[1])
            return [e[1][b"f"] for e in entries] if first == seq + 1 else None
        return [] if raw is None or _dec_session.decode(raw).seq <= seq else None

    async def due(self, now: int, limit: int) -> list[str]:
        ids = await self.redis.zrangebyscore(self.k("due"), "-inf", now, start=0, num=limit)
        return [i.decode() for i in ids]

    async def open_sessions(self, machine_id: str) -> list[Session]:
        ids = await self.redis.zrange(self.k("ms", machine_id), 0, -1)
        if not ids:
            return []
        raws = await self.redis.mget([self.k("s", i.decode()) for i in ids])
        sessions = [_dec_session.decode(r) for r in raws if r is not None]
        return [s for s in sessions if not s.finished]

    async def design_image(self, session_id: str) -> tuple[str, bytes] | None:
        found = await self.redis.hgetall(self.k("img", session_id))
        if not found:
            return None
        return found[b"mime"].decode(), found[b"data"]

    # -- webhook outbox ---------------------------------------------------------------
    async def outbox_due(self, now: int, limit: int) -> list[Delivery]:
        mids = await self.redis.zrangebyscore(self.k("ob", "due"), "-inf", now, start=0,
                                              num=limit)
        found = []
        for raw in mids:
            mid = raw.decode()
            head = await self.redis.lindex(self.k("ob", "q", mid), 0)
            if head is None:
                await self.redis.zrem(self.k("ob", "due"), mid)
                continue
            meta = await self.redis.hget(self.k("ob", "meta"), head)
            if meta is None:
                await self.redis.lrem(self.k("ob", "q", mid), 1, head)
                continue
            info = msgspec.json.decode(meta)
            sid, seq = head.decode().rsplit("|", 1)
            found.append(Delivery(mid, sid, int(seq), info["url"], info["attempts"],
                                  info["created"]))
        return found

    async def outbox_claim(self, machine_id: str, lease_ms: int) -> bool:
        return bool(await self.redis.set(self.k("ob", "lock", machine_id), "1", nx=True,
                                         px=lease_ms))

    async def outbox_settle(self, d: Delivery, retry_at: int | None) -> None:
        member = f"{d.session_id}|{d.seq}"
        queue = self.k("ob", "q", d.machine_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if retry_at is None:
                pipe.lrem(queue, 1, member)
                pipe.hdel(self.k("ob", "meta"), member)
            else:
                pipe.hset(self.k("ob", "meta"), member, _enc.encode(
                    {"url": d.url, "attempts": d.attempts + 1, "created": d.created_at}))
                pipe.zadd(self.k("ob", "due"), {d.machine_id: retry_at})
            await pipe.execute()
        if retry_at is None:
            if await self.redis.llen(queue):
                await self.redis.zadd(self.k("ob", "due"), {d.machine_id: 0})
            else:
                await self.redis.zrem(self.k("ob", "due"), d.machine_id)
                if await self.redis.llen(queue):  # one was queued meanwhile
                    await self.redis.zadd(self.k("ob", "due"), {d.machine_id: 0})
        await self.redis.delete(self.k("ob", "lock", d.machine_id))
