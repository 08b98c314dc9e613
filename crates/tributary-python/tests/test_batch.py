"""tributary.batch: progress as an async iterator, a resumable SQLite database, clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import tributary
from conftest import FAST

QUESTIONS = ["Weather in Paris?", "Why does the GIL matter?", "News about Tokyo", "Weather in Oslo?", "What is asyncio?"]


async def test_a_batch_reports_progress_and_resumes(tmp_path: Path) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(QUESTIONS) + "\n")
    db = tmp_path / "answers.db"
    batch = tributary.batch(questions, db=db, interval=0.05, **FAST)
    updates = [progress async for progress in batch]
    assert updates, "at least the final counters"
    assert updates[-1].done == len(QUESTIONS) and updates[-1].total == len(QUESTIONS)
    assert batch.summary is not None
    assert batch.summary.stats.ok + batch.summary.stats.degraded == len(QUESTIONS)
    assert sum(batch.summary.in_store.values()) == len(QUESTIONS)
    with sqlite3.connect(db) as connection:
        (rows,) = connection.execute("select count(*) from answers").fetchone()
    assert rows == len(QUESTIONS)

    # A rerun answers nothing again: every line is already stored.
    again = await tributary.batch(questions, db=db, **FAST)
    assert again.stats.skipped == len(QUESTIONS)
    assert again.stats.ok == 0


async def test_a_batch_with_an_agent_leaves_it_open(agent: tributary.Agent, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"id": "a", "question": "Weather in Paris?"}\n')
    summary = await agent.batch(questions, tmp_path / "answers.db")
    assert summary.stats.read == 1
    assert not agent.closed


async def test_an_unopenable_input_is_a_batch_error(tmp_path: Path) -> None:
    with pytest.raises(tributary.BatchError, match="missing.txt"):
        tributary.batch(tmp_path / "missing.txt", db=tmp_path / "answers.db", **FAST)


async def test_a_database_that_is_not_one_is_a_batch_error(tmp_path: Path) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_text("Weather in Paris?\n")
    db = tmp_path / "answers.db"
    db.write_text("not a database, and it is kept" * 100)
    with pytest.raises(tributary.BatchError, match="answers.db"):
        tributary.batch(questions, db=db, **FAST)
    assert db.read_text().startswith("not a database")
