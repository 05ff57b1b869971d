"""The embedded store: one SQLite file in WAL mode, stdlib ``sqlite3`` only.

Statements run on the event loop's thread, each one short and bounded (indexed point
reads and writes, ``LIMIT``-ed scans): in WAL mode with ``synchronous=NORMAL`` a commit
appends pages to the WAL and never waits for the disk. The one step that does wait for
the disk, copying the WAL back into the database file with an ``fsync`` (a checkpoint),
is taken off the loop: automatic checkpoints are off on the loop's connection, and a
second connection checkpoints on a worker thread every :data:`CHECKPOINT_S` seconds.
Running inline, rather than hopping to a worker thread per command, removes the hop's
GIL hand-offs, which cost up to ``sys.getswitchinterval()`` (5 ms) each at the tail
(bench/RESULTS.md). Writes are serialised without locks: nothing awaits between a
command's load, decision and writes.

Group commit: the ``apply`` calls of one event-loop iteration share one ``BEGIN
IMMEDIATE … COMMIT``, taken at the start of the next iteration; each returns only once
that commit is done (nothing is published or answered before it is durable). A refusal
raises before its command writes anything, so it leaves the batch alone; a failed
statement or ``COMMIT`` rolls the whole batch back and fails every command in it (503).
Until the ``COMMIT`` (one loop iteration), this process reads the batch's writes.
Given a ``publish`` function, the store publishes each event right after its COMMIT,
before any command of the batch resumes (``Committed.published``), as the Redis store
publishes inside its commit: no command can read a committed state whose events have
not been handed to the sockets yet.
The event history is kept whole (nothing is trimmed), which more than meets
CONTRACT §4's "last 200 events and 10 minutes".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import msgspec

from ..codec import event_frame
from ..errors import HubError
from ..lifecycle import NOTIFY_EVENTS, TERMINAL, Outcome, Session
from ..machines import Machine
from . import Committed, Decide, Delivery, Publish, deliver_here

__all__ = ["SqliteStore"]

log = logging.getLogger("hub.store")

_NOT_FINISHED = "status NOT IN (" + ", ".join(repr(s) for s in sorted(TERMINAL)) + ")"
_SCHEMA = files(__package__).joinpath("sqlite.sql").read_text().format(
    not_finished=_NOT_FINISHED)

_enc = msgspec.json.Encoder()
CACHE_SIZE = 50_000  #: sessions kept in memory
CHECKPOINT_S = 1.0  #: seconds between WAL checkpoints (on a worker thread)
#: ms the loop's connection waits for another process's write lock (``hub machines
#: add`` while serving) before the command answers 503
BUSY_TIMEOUT_MS = 500
_dec_session = msgspec.json.Decoder(Session)


#: the columns of ``sessions`` that indexes cover (besides the key) and the state mirrors
_INDEXED = ("status", "expires_at", "phone_token")


@functools.lru_cache(maxsize=None)
def _update_sql(changed: tuple[str, ...]) -> str:
    """The UPDATE of a session's state that also SETs the indexed columns ``changed``."""
    return "UPDATE sessions SET " + "".join(f"{c} = ?, " for c in changed) + \
        "seq = ?, state = ? WHERE session_id = ?"


class SqliteStore:
    """:class:`~hub.store.Store` on a SQLite file (``path``; ``:memory:`` for tests).

    Args:
        path: the database file; created with its tables when missing.
        publish: ``(channel, frame)`` → None, called synchronously for every committed
            event on its session's and machine's channels
            (:meth:`hub.broker.Broker.deliver_here`); None: the caller publishes.
    """

    name = "sqlite"

    def __init__(self, path: str, publish: Publish | None = None) -> None:
        self.path, self.publish = path, publish
        self._db: sqlite3.Connection | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._leases: set[str] = set()  # one process owns the file: leases are local
        #: session id → state as last committed (LRU). One process owns the file, so
        #: reads are served from memory; it is only ever changed after a commit.
        self._cache: OrderedDict[str, Session] = OrderedDict()
        #: the open group commit: a future per command waiting for it, what it wrote
        self._waiters: list[asyncio.Future[None]] | None = None
        self._batch: list[Committed] = []
        self._outbox_n = 0  #: the last webhook's place in commit order (outbox.n)
        #: open sessions known to have no design image row (created or cleared by this
        #: process): a new order without an image skips the DELETE
        self._imageless: set[str] = set()

    # -- plumbing -------------------------------------------------------------------
    def _connect(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA wal_autocheckpoint=0")  # _checkpoint_forever does it
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        if "n" not in columns:  # a file from before: order its rows as they were ordered
            db.execute("ALTER TABLE outbox ADD COLUMN n INTEGER NOT NULL DEFAULT 0")
            db.execute("UPDATE outbox SET n = created_at * 1000000 + seq")
        db.execute("CREATE INDEX IF NOT EXISTS outbox_order ON outbox (machine_id, n)")
        self._outbox_n = db.execute("SELECT COALESCE(MAX(n), 0) FROM outbox").fetchone()[0]
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SqliteStore is not open")
        return self._db

    async def open(self) -> None:
        """Open the file (creating tables) and start checkpointing; idempotent."""
        if self._db is None:
            self._connect()
            if self.path != ":memory:":
                self._checkpointer = asyncio.create_task(self._checkpoint_forever())

    async def close(self) -> None:
        """Stop checkpointing and close the connection (SQLite checkpoints the WAL as
        the last connection closes); idempotent."""
        if self._db is not None:
            self._flush()
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    async def _checkpoint_forever(self) -> None:
        """Copy the WAL into the database file every CHECKPOINT_S, on a worker thread
        with its own connection (``PASSIVE``: it never blocks the loop's writes)."""
        db = await asyncio.to_thread(sqlite3.connect, self.path, check_same_thread=False)
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_S)
                try:
                    await asyncio.to_thread(db.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed: %r", exc)
        finally:
            await asyncio.shield(asyncio.to_thread(db.close))

    async def ping(self) -> None:
        self.db.execute("SELECT 1").fetchone()

    # -- machines -------------------------------------------------------------------
    async def add_machine(self, m: Machine) -> None:
        self._flush()
        self.db.execute(
            "INSERT OR REPLACE INTO machines VALUES (?,?,?,?,?,?,?)",
            (m.machine_id, m.name, m.location, m.key_hash, m.created_at,
             m.callback_url, m.webhook_secret))

    def _machine_where(self, where: str, arg: Any) -> list[Machine]:
        rows = self.db.execute(
            "SELECT machine_id, name, location, key_hash, created_at, callback_url,"
            f" webhook_secret FROM machines {where}", arg).fetchall()
        return [Machine(*r) for r in rows]

    async def machine(self, machine_id: str) -> Machine | None:
        found = self._machine_where("WHERE machine_id = ?", (machine_id,))
        return found[0] if found else None

    async def machine_by_key(self, key_hash: str) -> Machine | None:
        found = self._machine_where("WHERE key_hash = ?", (key_hash,))
        return found[0] if found else None

    async def machines(self) -> list[Machine]:
        return self._machine_where("ORDER BY machine_id", ())

    # -- sessions -------------------------------------------------------------------
    def _remember(self, s: Session) -> None:
        """Cache a committed state (called with no await between commit and here)."""
        self._cache[s.session_id] = s
        self._cache.move_to_end(s.session_id)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def create(self, outcome: Outcome) -> Committed:
        done = self._commit_new(outcome)
        self._remember(done.outcome.session)
        deliver_here(self.publish, done.outcome, done.frames)
        return self._committed(done)

    def _committed(self, done: Committed) -> Committed:
        """``done`` as answered once its frames were handed out (when a ``publish`` was
        given, the caller has nothing left to publish)."""
        if self.publish is None or not done.frames:
            return done
        return Committed(done.outcome, done.frames, published=True)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction of its own (after the open group commit): COMMIT on
        success, ROLLBACK on any exception."""
        self._flush()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _commit_new(self, outcome: Outcome) -> Committed:
        s = outcome.session
        with self._transaction() as db:
            db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                       (s.session_id, s.machine_id, s.status, s.expires_at, s.phone_token,
                        s.seq, s.created_at, _enc.encode(s)))
            frames = self._append(outcome)
        self._imageless.add(s.session_id)
        return Committed(outcome, frames)

    def _append(self, outcome: Outcome) -> tuple[bytes, ...]:
        frames = tuple(event_frame(ev) for ev in outcome.events)
        self.db.executemany(
            "INSERT INTO events VALUES (?,?,?)",
            [(ev.session_id, ev.seq, f) for ev, f in zip(outcome.events, frames)])
        s = outcome.session
        if s.callback_url:
            for ev in outcome.events:
                if ev.event in NOTIFY_EVENTS:
                    self._outbox_n += 1
                    self.db.execute(
                        "INSERT INTO outbox (session_id, seq, machine_id, url, attempts,"
                        " next_at, created_at, n) VALUES (?,?,?,?,0,?,?,?)",
                        (ev.session_id, ev.seq, s.machine_id, s.callback_url, ev.at, ev.at,
                         self._outbox_n))
        return frames

    def _load(self, session_id: str) -> Session | None:
        row = self.db.execute("SELECT state FROM sessions WHERE session_id = ?",
                              (session_id,)).fetchone()
        return None if row is None else _dec_session.decode(row[0])

    async def load(self, session_id: str, recent_ok: bool = False) -> Session | None:
        found = self._cache.get(session_id)
        if found is not None:
            return found
        found = self._load(session_id)
        if found is not None and session_id not in self._cache:
            self._remember(found)
        return found

    async def session_for_token(self, phone_token: str) -> str | None:
        row = self.db.execute(
            "SELECT session_id FROM sessions WHERE phone_token = ?", (phone_token,)).fetchone()
        return None if row is None else row[0]

    async def apply(self, session_id: str, decide: Decide,
                    image: tuple[str, bytes] | None = None) -> Committed:
        if self._waiters is None:  # open this iteration's group commit
            self.db.execute("BEGIN IMMEDIATE")
            self._waiters, self._batch = [], []
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            done = self._apply(session_id, decide, image)
        except HubError:
            raise  # refused before writing anything: the batch goes on
        except BaseException as exc:
            self._flush(exc)
            raise
        if done.outcome.events:
            self._remember(done.outcome.session)
            self._batch.append(done)
        elif all(d.outcome.session.session_id != session_id for d in self._batch):
            return done  # a no-op decided on committed state
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter  # cancelling it leaves the batch to commit or not, as a whole
        return self._committed(done)

    def _flush(self, failure: BaseException | None = None) -> None:
        """End the open group commit: COMMIT it (or, after ``failure``, ROLLBACK it) and
        release its commands; a failed batch's sessions are read again from the file."""
        waiters, self._waiters = self._waiters, None
        if waiters is None:
            return
        if failure is None:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                failure = exc
        if failure is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            for done in self._batch:
                self._cache.pop(done.outcome.session.session_id, None)
            self._imageless.clear()  # a rolled-back DELETE left its row: ask the file again
            log.error("group commit of %d command(s) failed: %r", len(waiters), failure)
        else:
            for done in self._batch:  # in commit order, before any command resumes
                deliver_here(self.publish, done.outcome, done.frames)
        self._batch = []
        for waiter in waiters:
            if not waiter.done():
                if failure is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(sqlite3.OperationalError(f"commit failed: {failure}"))

    def _apply(self, session_id: str, decide: Decide,
               image: tuple[str, bytes] | None) -> Committed:
        """Load, decide and write inside the open transaction; every refusal is raised
        before the first write."""
        db = self.db
        # the cache holds the latest state: nothing else writes sessions
        current = self._cache.get(session_id) or self._load(session_id)
        if current is None:
            raise HubError(404, "Session not found")
        outcome = decide(current)
        if not outcome.events:
            return Committed(outcome, ())
        s = outcome.session
        if s.payment is not None and current.payment is None:
            owner = db.execute(
                "SELECT session_id FROM payments WHERE scope = ? AND transaction_id = ?",
                (s.payment.scope, s.payment.transaction_id)).fetchone()
            if owner is not None:
                raise HubError(409, "Transaction ID already used")
            db.execute("INSERT INTO payments VALUES (?,?,?)",
                       (s.payment.scope, s.payment.transaction_id, s.session_id))
        # only the indexed columns that changed are SET: SQLite rewrites the index
        # entries of every column named in SET, changed or not
        changed = tuple(c for c in _INDEXED if getattr(s, c) != getattr(current, c))
        db.execute(_update_sql(changed),
                   (*(getattr(s, c) for c in changed), s.seq, _enc.encode(s), s.session_id))
        if any(ev.event == "order.summary" for ev in outcome.events):
            if image is not None:
                db.execute("INSERT OR REPLACE INTO images VALUES (?,?,?)",
                           (session_id, image[0], image[1]))
                self._imageless.discard(session_id)
            elif session_id not in self._imageless:
                db.execute("DELETE FROM images WHERE session_id = ?", (session_id,))
                self._imageless.add(session_id)
        if s.finished:
            self._imageless.discard(session_id)
        return Committed(outcome, self._append(outcome))

    async def events_after(self, session_id: str, seq: int) -> list[bytes] | None:
        return self._events_after(session_id, seq)

    def _events_after(self, session_id: str, seq: int) -> list[bytes] | None:
        rows = self.db.execute(
            "SELECT seq, frame FROM events WHERE session_id = ? AND seq > ? ORDER BY seq",
            (session_id, seq)).fetchall()
        if rows:
            return [r[1] for r in rows] if rows[0][0] == seq + 1 else None
        s = self._load(session_id)
        return [] if s is None or s.seq <= seq else None

    async def due(self, now: int, limit: int) -> list[str]:
        rows = self.db.execute(
            "SELECT session_id FROM sessions WHERE expires_at <= ? AND "
            f"{_NOT_FINISHED} ORDER BY expires_at LIMIT ?", (now, limit)).fetchall()
        return [r[0] for r in rows]

    async def open_sessions(self, machine_id: str) -> list[Session]:
        rows = self.db.execute(
            "SELECT state FROM sessions WHERE machine_id = ? AND "
            f"{_NOT_FINISHED} ORDER BY created_at", (machine_id,)).fetchall()
        return [_dec_session.decode(r[0]) for r in rows]

    async def design_image(self, session_id: str) -> tuple[str, bytes] | None:
        row = self.db.execute(
            "SELECT mime, data FROM images WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    # -- webhook outbox ---------------------------------------------------------------
    async def outbox_due(self, now: int, limit: int) -> list[Delivery]:
        rows = self.db.execute(
            "SELECT o.machine_id, o.session_id, o.seq, o.url, o.attempts, o.created_at,"
            " o.next_at FROM outbox o JOIN (SELECT machine_id, MIN(n)"
            " AS head FROM outbox GROUP BY machine_id) h ON o.machine_id = h.machine_id"
            " AND o.n = h.head WHERE o.next_at <= ?"
            " ORDER BY o.next_at LIMIT ?", (now, limit)).fetchall()
        return [Delivery(*r[:6]) for r in rows]

    async def outbox_claim(self, machine_id: str, lease_ms: int) -> bool:
        if machine_id in self._leases:
            return False
        self._leases.add(machine_id)
        return True

    async def outbox_settle(self, d: Delivery, retry_at: int | None) -> None:
        self._flush()

        def settle() -> None:
            if retry_at is None:
                self.db.execute("DELETE FROM outbox WHERE session_id = ? AND seq = ?",
                                (d.session_id, d.seq))
            else:
                self.db.execute("UPDATE outbox SET attempts = ?, next_at = ?"
                                " WHERE session_id = ? AND seq = ?",
                                (d.attempts + 1, retry_at, d.session_id, d.seq))
        try:
            settle()
        finally:
            self._leases.discard(d.machine_id)
