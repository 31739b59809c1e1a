"""SQLite response cache: every completed call is committed before it is used."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from icai.llm.base import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""


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
            self._conn.execute(_SCHEMA)
            self._conn.commit()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._conn.execute("SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        if data.get("branch_logprobs") is not None:
            data["branch_logprobs"] = tuple(data["branch_logprobs"])
        return Completion(**data, from_cache=True)

    def put(self, key: str, model: str, completion: Completion) -> None:
        data = {
            "text": completion.text,
            "input_tokens": completion.input_tokens,
            "output_tokens": completion.output_tokens,
            "cached_input_tokens": completion.cached_input_tokens,
            "choice_logprobs": dict(completion.choice_logprobs) if completion.choice_logprobs else None,
        }
        if completion.branch_logprobs is not None:
            data["branch_logprobs"] = [dict(b) if b is not None else None for b in completion.branch_logprobs]
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (key, model, completion) VALUES (?, ?, ?)",
                (key, model, json.dumps(data, ensure_ascii=False)),
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
