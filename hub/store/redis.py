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

Every transition is one ``WATCH``/``MULTI``/``EXEC``: the state is read under ``WATCH``,
the pure lifecycle decides, and the new state, its events (``XADD``), the payment key,
the indexes and the ``PUBLISH`` of each frame commit together or not at all. Two
instances racing on a session: one ``EXEC`` wins, the other's ``WATCH`` fails and it
decides again on the winner's state. When a session ends, its keys get a TTL of
``retention_s`` (default 7 days).
"""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError

from ..broker import machine_channel, session_channel
from ..codec import event_frame
from ..errors import HubError
from ..lifecycle import NOTIFY_EVENTS, Outcome, Session
from ..machines import Machine
from . import Committed, Decide, Delivery

__all__ = ["RedisStore", "STREAM_MAXLEN"]

#: events kept per session at least (CONTRACT §4 asks for 200)
STREAM_MAXLEN = 1000
_MAX_TRIES = 1000

_enc = msgspec.json.Encoder()
_dec_session = msgspec.json.Decoder(Session)
_dec_machine = msgspec.json.Decoder(Machine)


class RedisStore:
    """:class:`~hub.store.Store` on Redis.

    Args:
        redis: a ``redis.asyncio.Redis`` client (bytes replies); prefix: key prefix.
        retention_s: how long a finished session's keys are kept, seconds.
    """

    name = "redis"

    def __init__(self, redis: Redis, prefix: str = "hub:", retention_s: int = 7 * 86400):
        self.redis, self.prefix, self.retention_s = redis, prefix, retention_s

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
    def _queue_commit(self, pipe: Any, before: Session | None, outcome: Outcome,
                      image: tuple[str, bytes] | None) -> tuple[bytes, ...]:
        """Queue (inside MULTI) everything one outcome writes; return its frames."""
        s = outcome.session
        sid = s.session_id
        pipe.set(self.k("s", sid), _enc.encode(s))
        frames = tuple(event_frame(ev) for ev in outcome.events)
        for ev, frame in zip(outcome.events, frames):
            pipe.xadd(self.k("ev", sid), {"f": frame}, id=f"0-{ev.seq}",
                      maxlen=STREAM_MAXLEN, approximate=True)
        if s.phone_token and (before is None or before.phone_token is None):
            pipe.set(self.k("tok", s.phone_token), sid)
        if s.payment is not None and (before is None or before.payment is None):
            pipe.set(self.k("pay", s.payment.scope, s.payment.transaction_id), sid)
        if any(ev.event == "order.summary" for ev in outcome.events):
            if image is None:
                pipe.delete(self.k("img", sid))
            else:
                pipe.hset(self.k("img", sid), mapping={"mime": image[0], "data": image[1]})
        if s.finished:
            pipe.zrem(self.k("due"), sid)
            pipe.zrem(self.k("ms", s.machine_id), sid)
            for key in ("s", "ev", "img"):
                pipe.expire(self.k(key, sid), self.retention_s)
            for key in (("tok", s.phone_token) if s.phone_token else None,
                        ("pay", s.payment.scope, s.payment.transaction_id)
                        if s.payment else None):
                if key:
                    pipe.expire(self.k(*key), self.retention_s)
        else:
            pipe.zadd(self.k("due"), {sid: s.expires_at})
            if before is None:
                pipe.zadd(self.k("ms", s.machine_id), {sid: s.created_at})
        if s.callback_url:
            for ev in outcome.events:
                if ev.event in NOTIFY_EVENTS:
                    member = f"{sid}|{ev.seq}"
                    pipe.rpush(self.k("ob", "q", s.machine_id), member)
                    pipe.hset(self.k("ob", "meta"), member, _enc.encode(
                        {"url": s.callback_url, "attempts": 0, "created": ev.at}))
                    pipe.zadd(self.k("ob", "due"), {s.machine_id: ev.at}, nx=True)
        for frame in frames:
            pipe.publish(self.prefix + session_channel(sid), frame)
            pipe.publish(self.prefix + machine_channel(s.machine_id), frame)
        return frames

    async def create(self, outcome: Outcome) -> Committed:
        key = self.k("s", outcome.session.session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            if await pipe.exists(key):
                raise HubError(409, "Session already exists")
            pipe.multi()
            frames = self._queue_commit(pipe, None, outcome, None)
            await pipe.execute()
        return Committed(outcome, frames, published=True)

    async def load(self, session_id: str) -> Session | None:
        raw = await self.redis.get(self.k("s", session_id))
        return None if raw is None else _dec_session.decode(raw)

    async def session_for_token(self, phone_token: str) -> str | None:
        sid = await self.redis.get(self.k("tok", phone_token))
        return None if sid is None else sid.decode()

    async def apply(self, session_id: str, decide: Decide,
                    image: tuple[str, bytes] | None = None) -> Committed:
        key = self.k("s", session_id)
        for _ in range(_MAX_TRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise HubError(404, "Session not found")
                    current = _dec_session.decode(raw)
                    outcome = decide(current)
                    if not outcome.events:
                        return Committed(outcome, (), published=True)
                    p = outcome.session.payment
                    if p is not None and current.payment is None:
                        pay_key = self.k("pay", p.scope, p.transaction_id)
                        await pipe.watch(pay_key)
                        owner = await pipe.get(pay_key)
                        if owner is not None and owner.decode() != session_id:
                            raise HubError(409, "Transaction ID already used")
                    pipe.multi()
                    frames = self._queue_commit(pipe, current, outcome, image)
                    await pipe.execute()
                    return Committed(outcome, frames, published=True)
                except WatchError:
                    continue
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
