"""The embedded store's group commit (hub.store.sqlite), in process on a real file.

The applies of one event-loop iteration share one transaction; each returns only after
its COMMIT; a refusal leaves the batch alone; a failure fails the whole batch, and the
file and the memory are as before it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from hub import lifecycle as L
from hub.errors import HubError
from hub.store.sqlite import SqliteStore

POLICY = L.Policy(60_000, 300_000)
NOW = 1_790_000_000_000


async def _store_with(path: Path, n: int) -> tuple[SqliteStore, list[str]]:
    store = SqliteStore(str(path))
    await store.open()
    sids = []
    for i in range(n):
        sid = f"VM_S{i}_20260101_000000_ABCDEF{i:02d}"
        await store.create(L.new_session(sid, f"VM_S{i}", {}, None, None, 30, NOW, POLICY))
        sids.append(sid)
    return store, sids


def _progress(value: str):  # type: ignore[no-untyped-def]
    return lambda cur: L.progress(cur, value, NOW + 1, POLICY)


async def test_one_iteration_one_commit_and_all_durable(tmp_path: Path) -> None:
    store, sids = await _store_with(tmp_path / "h.db", 20)
    commits = []
    store.db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    done = await asyncio.gather(*(store.apply(sid, _progress("brand_selected"))
                                  for sid in sids))
    assert [d.outcome.session.seq for d in done] == [2] * 20
    assert len(commits) == 1  # twenty commands, one COMMIT
    await store.close()
    again = SqliteStore(str(tmp_path / "h.db"))
    await again.open()
    for sid in sids:
        s = await again.load(sid)
        assert s is not None and s.seq == 2 and s.user_progress == "brand_selected"
        assert await again.events_after(sid, 1) is not None
    await again.close()


async def test_refusal_leaves_the_batch_alone(tmp_path: Path) -> None:
    store, sids = await _store_with(tmp_path / "h.db", 2)
    missing = "VM_S9_20260101_000000_ABCDEF99"
    results = await asyncio.gather(store.apply(sids[0], _progress("brand_selected")),
                                   store.apply(missing, _progress("brand_selected")),
                                   store.apply(sids[1], _progress("brand_selected")),
                                   return_exceptions=True)
    assert isinstance(results[1], HubError) and results[1].status == 404
    assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)
    for sid in sids:
        assert (await store.load(sid)).seq == 2  # type: ignore[union-attr]
    await store.close()


async def test_a_failure_fails_the_whole_batch(tmp_path: Path) -> None:
    store, sids = await _store_with(tmp_path / "h.db", 3)

    def broken(cur: L.Session) -> L.Outcome:
        raise sqlite3.OperationalError("disk I/O error")

    results = await asyncio.gather(store.apply(sids[0], _progress("brand_selected")),
                                   store.apply(sids[1], broken),
                                   store.apply(sids[2], _progress("brand_selected")),
                                   return_exceptions=True)
    # the batch held the first two; the third, after the failure, opened a new one
    assert all(isinstance(r, sqlite3.OperationalError) for r in results[:2]), results
    assert not isinstance(results[2], BaseException)
    for sid in sids[:2]:  # nothing of the failed batch stayed, in memory or on disk
        assert (await store.load(sid)).seq == 1  # type: ignore[union-attr]
        assert await store.events_after(sid, 1) == []
    assert (await store.load(sids[2])).seq == 2  # type: ignore[union-attr]
    store._cache.clear()  # and the file agrees
    for sid, seq in zip(sids, (1, 1, 2)):
        assert (await store.load(sid)).seq == seq  # type: ignore[union-attr]
    done = await store.apply(sids[0], _progress("brand_selected"))  # the store goes on
    assert done.outcome.session.seq == 2
    await store.close()


async def test_a_later_writer_commits_the_open_batch_first(tmp_path: Path) -> None:
    store, sids = await _store_with(tmp_path / "h.db", 1)
    first = asyncio.ensure_future(store.apply(sids[0], _progress("brand_selected")))
    await asyncio.sleep(0)  # the apply has written, its COMMIT is pending
    await store.create(L.new_session("VM_T_20260101_000000_ABCDEF00", "VM_T", {}, None,
                                     None, 30, NOW, POLICY))
    assert (await first).outcome.session.seq == 2
    with pytest.raises(sqlite3.OperationalError):
        store.db.execute("COMMIT")  # no transaction was left open
    await store.close()


async def test_wal_is_checkpointed_off_the_loop(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Automatic checkpoints are off on the loop's connection; the worker thread copies
    the WAL into the database file every CHECKPOINT_S."""
    monkeypatch.setattr("hub.store.sqlite.CHECKPOINT_S", 0.05)
    path = tmp_path / "h.db"
    store, sids = await _store_with(path, 50)
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    size = path.stat().st_size
    for value in ("qr_scanned", "brand_selected", "design_complete"):
        await asyncio.gather(*(store.apply(sid, _progress(value)) for sid in sids))
    await asyncio.sleep(0.5)
    assert path.stat().st_size > size  # the WAL's pages reached the file
    busy, log_frames, done = store.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and log_frames == done
    await store.close()


async def test_events_are_published_at_commit_before_any_command_resumes(tmp_path: Path
                                                                          ) -> None:
    """A command that reads the state after a COMMIT always finds its events already
    handed out (the helper's case: an op's 409 ack overtook the payment.completed
    event that caused it)."""
    order: list[str] = []
    store = SqliteStore(str(tmp_path / "h.db"),
                        publish=lambda channel, frame: order.append(channel.split(":")[0]))
    await store.open()
    sid = "VM_P_20260101_000000_ABCDEF00"
    created = await store.create(L.new_session(sid, "VM_P", {}, None, None, 30, NOW, POLICY))
    assert created.published and order == ["session", "machine"]
    order.clear()
    store.db.set_trace_callback(lambda sql: order.append("COMMIT") if sql == "COMMIT" else None)

    async def write() -> None:
        done = await store.apply(sid, _progress("brand_selected"))
        assert done.published
        order.append("writer resumed")

    async def read_after() -> None:  # a no-op on a state written in the same batch
        done = await store.apply(sid, _progress("qr_scanned"))
        assert not done.outcome.events
        order.append("reader resumed")

    await asyncio.gather(write(), read_after())
    assert order == ["COMMIT", "session", "machine", "writer resumed", "reader resumed"]
    await store.close()


async def test_an_older_file_gets_the_outbox_commit_order(tmp_path: Path) -> None:
    """A file from before outbox.n keeps its pending webhooks, in their old order."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE outbox (session_id TEXT NOT NULL, seq INTEGER NOT NULL,"
               " machine_id TEXT NOT NULL, url TEXT NOT NULL, attempts INTEGER NOT NULL"
               " DEFAULT 0, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL,"
               " PRIMARY KEY (session_id, seq)) WITHOUT ROWID")
    db.executemany("INSERT INTO outbox VALUES (?,?,?,?,0,?,?)", [
        ("S2", 2, "VM_O", "http://h/", 5, 200), ("S1", 7, "VM_O", "http://h/", 5, 100)])
    db.commit()
    db.close()
    store = SqliteStore(str(path))
    await store.open()
    due = await store.outbox_due(NOW, 10)
    assert [(d.session_id, d.seq) for d in due] == [("S1", 7)]  # the older one first
    await store.outbox_settle(due[0], None)
    assert [(d.session_id, d.seq) for d in await store.outbox_due(NOW, 10)] == [("S2", 2)]
    await store.close()
