"""SQLite response cache: completed calls are committed in batched transactions (`LLM.map` writes a batch at
least every `icai.llm.client.CACHE_FLUSH_CALLS` calls or `CACHE_FLUSH_S` seconds, and before it returns or raises),
so an interrupted run loses at most one unwritten batch of answers, which a resumed run asks again."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from icai.errors import ConfigError
from icai.llm.base import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""


SCHEMA_VERSION = 1
"""The cache file's layout, kept in SQLite's `PRAGMA user_version`; `_MIGRATIONS` bring an older file up to it.

0: a file made before the version was recorded (the `responses` table as above; no version set);
1: the same table, with the version recorded."""


def _to_1(conn: sqlite3.Connection) -> None:
    conn.execute(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
    if "created" not in columns:  # the first caches had no time column
        conn.execute("ALTER TABLE responses ADD COLUMN created REAL NOT NULL DEFAULT 0")


_MIGRATIONS = {1: _to_1}
"""version -> the step that brings a file of the version before it to this one (run in order, one transaction)."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the cache in `conn` to `SCHEMA_VERSION`; returns the version it had. A newer file is refused."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise ConfigError(
            f"the response cache has layout version {found}, newer than this icai knows ({SCHEMA_VERSION}): "
            "upgrade icai, or move the cache.sqlite aside to start a new one"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        _MIGRATIONS[version](conn)
    if found != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.commit()
    return found


LOOKUP_CHUNK = 500
"""Keys per SELECT ... IN (...) (SQLite allows 999 parameters on old builds)."""


def _dumps(completion: Completion) -> str:
    data = {
        "text": completion.text,
        "input_tokens": completion.input_tokens,
        "output_tokens": completion.output_tokens,
        "cached_input_tokens": completion.cached_input_tokens,
        "choice_logprobs": dict(completion.choice_logprobs) if completion.choice_logprobs else None,
    }
    if completion.branch_logprobs is not None:
        data["branch_logprobs"] = [dict(b) if b is not None else None for b in completion.branch_logprobs]
    return json.dumps(data, ensure_ascii=False)


def _loads(text: str) -> Completion:
    data = json.loads(text)
    if data.get("branch_logprobs") is not None:
        data["branch_logprobs"] = tuple(data["branch_logprobs"])
    return Completion(**data, from_cache=True)


class ResponseCache:
    """A thread-safe key -> Completion store in one SQLite file (WAL mode)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self.found_version = migrate(self._conn)
            """The layout version the file had when opened (0: made before versions were recorded)."""

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._conn.execute("SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return _loads(row[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The cached completions among `keys`, looked up a few hundred at a time."""
        found: dict[str, Completion] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._conn.execute(f"SELECT key, completion FROM responses WHERE key IN ({marks})", chunk).fetchall()
            for key, text in rows:
                found[key] = _loads(text)
        return found

    def put(self, key: str, model: str, completion: Completion) -> None:
        self.put_many([(key, model, completion)])

    def put_many(self, rows: Sequence[tuple[str, str, Completion]]) -> None:
        """Store (key, model, completion) rows in one transaction."""
        if not rows:
            return
        data = [(key, model, _dumps(completion)) for key, model, completion in rows]
        with self._lock:
            self._conn.executemany("INSERT OR REPLACE INTO responses (key, model, completion) VALUES (?, ?, ?)", data)
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
