"""The response cache (icai.llm.cache): its layout version, and caches written by older versions of icai."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from icai.errors import ConfigError
from icai.llm.cache import SCHEMA_VERSION, ResponseCache

OLD_SCHEMA = """
CREATE TABLE responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""
"""The table as icai 0.1.0 wrote it, before the layout version was recorded (PRAGMA user_version 0)."""

OLD_ANSWER = {"text": '{"preferred": "A"}', "input_tokens": 75, "output_tokens": 2, "cached_input_tokens": 0, "choice_logprobs": None}


def _old_cache(path: Path, schema: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(schema)
        db.execute("INSERT INTO responses (key, model, completion) VALUES (?, ?, ?)", ("k1", "fake/keyword", json.dumps(OLD_ANSWER)))


def _version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_cache_written_before_versions_opens_and_keeps_its_answers(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    _old_cache(path, OLD_SCHEMA)
    assert _version(path) == 0
    cache = ResponseCache(path)
    try:
        assert cache.found_version == 0
        got = cache.get("k1")
        assert got is not None and got.text == '{"preferred": "A"}' and got.input_tokens == 75 and got.from_cache
    finally:
        cache.close()
    assert _version(path) == SCHEMA_VERSION
    again = ResponseCache(path)  # a migrated file opens as current
    try:
        assert again.found_version == SCHEMA_VERSION and again.get("k1") is not None
    finally:
        again.close()


def test_a_cache_without_the_time_column_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    _old_cache(path, "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, completion TEXT NOT NULL)")
    cache = ResponseCache(path)
    try:
        assert cache.get("k1") is not None
    finally:
        cache.close()
    with sqlite3.connect(path) as db:
        assert "created" in {row[1] for row in db.execute("PRAGMA table_info(responses)")}


def test_a_new_cache_records_its_version_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    ResponseCache(path).close()
    assert _version(path) == SCHEMA_VERSION
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer than this icai knows"):
        ResponseCache(path)
