"""Persistent conversation sessions: one JSON state per session id in SQLite, so Slack threads and
web sessions survive a restart; sessions idle longer than the TTL expire.

Thread-safe: each thread gets its own SQLite connection (WAL mode, so readers never block the
writer), and `lock(session_id)` serialises the turns of one conversation inside a process while
different conversations run in parallel. A version column catches a concurrent writer from another
process (`StaleSessionError`) instead of silently losing its turn.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, Field

from ..tools.errors import InputError
from .diagnosis import DiagnoseRequest, Diagnosis

MAX_SESSION_ID = 200            # Slack "channel:thread_ts" and UUIDs are far shorter
MAX_HISTORY_TURNS = 200         # older turns are dropped from the stored history (the state keeps the facts)
MAX_TURN_TEXT = 2000            # a turn's text as stored in the history (full logs live in the request)


class Turn(BaseModel):
    """One message of the conversation as stored in the history (text shortened)."""

    role: Literal["user", "assistant"]
    text: str
    intent: str | None = None
    at: float = Field(default_factory=time.time)


class Feedback(BaseModel):
    """The user's verdict on the latest answer."""

    solved: bool
    note: str = ""
    at: float = Field(default_factory=time.time)


class SessionState(BaseModel):
    """What a conversation has established so far; every turn updates it and re-plans from it."""

    request: DiagnoseRequest = Field(default_factory=DiagnoseRequest)
    configs: dict[str, str] = Field(default_factory=dict, description="config files by name (main + DeepSpeed), latest wins")
    main_config: str | None = Field(default=None, description="name in `configs` of the training config")
    original_configs: dict[str, str] = Field(default_factory=dict, description="configs as the user gave them (before what-ifs)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="what-if settings applied on top of the config: key → value")
    method: str | None = Field(default=None, description="method the user asked for (lora / qlora / full)")
    unapplied: list[str] = Field(default_factory=list, description="what-if keys (and 'method') the config could not carry")
    margin: float | None = Field(default=None, description="GPU fraction plans may use; lowered each time a fix still OOMs")
    diagnosis: Diagnosis | None = None
    feedback: list[Feedback] = Field(default_factory=list)
    history: list[Turn] = Field(default_factory=list)
    language: Literal["en", "zh"] = "en"

    @property
    def solved(self) -> bool | None:
        return self.feedback[-1].solved if self.feedback else None

    def add_turn(self, role: Literal["user", "assistant"], text: str, intent: str | None = None) -> None:
        if len(text) > MAX_TURN_TEXT:
            text = text[: MAX_TURN_TEXT - 20] + " …[shortened]"
        self.history.append(Turn(role=role, text=text, intent=intent))
        del self.history[:-MAX_HISTORY_TURNS]


class Session(BaseModel):
    id: str
    created_at: float
    updated_at: float
    version: int = 0
    state: SessionState = Field(default_factory=SessionState)


class StaleSessionError(RuntimeError):
    """Another process saved this session after we loaded it; reload and apply the turn again."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_at);
"""


def check_session_id(session_id: str) -> str:
    """The id unchanged when it is usable as a session key; InputError (one line) otherwise."""
    if not isinstance(session_id, str) or not session_id.strip() or len(session_id) > MAX_SESSION_ID:
        raise InputError(f"bad session id: use 1-{MAX_SESSION_ID} characters (e.g. a UUID or a Slack thread id)")
    return session_id


class SessionStore:
    """Sessions by id in one SQLite file (":memory:" keeps them in this process only).

    `ttl_days`: a session not updated for this long is treated as gone and deleted by `expire()`
    (run on open and every `expire_every` saves).
    """

    def __init__(self, path: str | Path, ttl_days: float = 14.0, expire_every: int = 200):
        self.path = str(path)
        self.ttl_s = ttl_days * 86400.0
        self._expire_every = max(1, expire_every)
        self._saves = 0
        self._local = threading.local()
        self._memory = self.path == ":memory:"
        self._shared: sqlite3.Connection | None = None
        self._db_lock = threading.RLock()   # only used for ":memory:" (one connection shared by threads)
        self._locks: weakref.WeakValueDictionary[str, threading.RLock] = weakref.WeakValueDictionary()
        self._locks_guard = threading.Lock()
        if not self._memory:
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as db:
            db.executescript(_SCHEMA)
        self.expire()

    @classmethod
    def from_settings(cls, settings) -> "SessionStore":
        return cls(settings.session_db, ttl_days=settings.session_ttl_days)

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        if self._memory:
            with self._db_lock:
                if self._shared is None:
                    self._shared = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
                yield self._shared
            return
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(Path(self.path).expanduser(), timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        yield db

    @contextmanager
    def lock(self, session_id: str) -> Iterator[None]:
        """Serialise the turns of one session in this process (other sessions are not blocked)."""
        with self._locks_guard:
            lk = self._locks.get(session_id)
            if lk is None:
                lk = threading.RLock()
                self._locks[session_id] = lk
        with lk:
            yield

    # -- CRUD --------------------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        """The session, or None when unknown or expired."""
        check_session_id(session_id)
        with self._conn() as db:
            row = db.execute(
                "SELECT id, created_at, updated_at, version, state FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        if row is None or self._is_expired(row[2]):
            return None
        return Session(id=row[0], created_at=row[1], updated_at=row[2], version=row[3],
                       state=SessionState.model_validate_json(row[4]))

    def get_or_create(self, session_id: str) -> Session:
        found = self.get(session_id)
        if found is not None:
            return found
        now = time.time()
        return Session(id=session_id, created_at=now, updated_at=now, version=0)

    def save(self, session: Session) -> Session:
        """Write the session; its version must still be the stored one (else StaleSessionError)."""
        check_session_id(session.id)
        now = time.time()
        payload = session.state.model_dump_json()
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT version, updated_at FROM sessions WHERE id = ?", (session.id,)).fetchone()
                if row is None or self._is_expired(row[1]):
                    # new (or expired and about to be replaced): the loaded copy must be new too
                    if row is not None:
                        db.execute("DELETE FROM sessions WHERE id = ?", (session.id,))
                    elif session.version != 0:
                        raise StaleSessionError(f"session {session.id} was deleted while in use")
                    db.execute("INSERT INTO sessions (id, created_at, updated_at, version, state) VALUES (?, ?, ?, ?, ?)",
                               (session.id, session.created_at, now, 1, payload))
                    new_version = 1
                else:
                    if row[0] != session.version:
                        raise StaleSessionError(f"session {session.id} changed since it was loaded (v{session.version} → v{row[0]})")
                    new_version = row[0] + 1
                    db.execute("UPDATE sessions SET updated_at = ?, version = ?, state = ? WHERE id = ?",
                               (now, new_version, payload, session.id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self._saves += 1
        if self._saves % self._expire_every == 0:
            self.expire()
        return session.model_copy(update={"version": new_version, "updated_at": now})

    def delete(self, session_id: str) -> bool:
        with self._conn() as db:
            cur = db.execute("DELETE FROM sessions WHERE id = ?", (check_session_id(session_id),))
        return cur.rowcount > 0

    def list_ids(self, limit: int = 100) -> list[str]:
        """Live session ids, most recently updated first."""
        cutoff = time.time() - self.ttl_s
        with self._conn() as db:
            rows = db.execute("SELECT id FROM sessions WHERE updated_at >= ? ORDER BY updated_at DESC LIMIT ?",
                              (cutoff, limit)).fetchall()
        return [r[0] for r in rows]

    def expire(self, now: float | None = None) -> int:
        """Delete sessions idle longer than the TTL; returns how many went."""
        cutoff = (time.time() if now is None else now) - self.ttl_s
        with self._conn() as db:
            cur = db.execute("DELETE FROM sessions WHERE updated_at < ?", (cutoff,))
        return cur.rowcount

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    def _is_expired(self, updated_at: float) -> bool:
        return updated_at < time.time() - self.ttl_s


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
