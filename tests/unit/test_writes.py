"""Composing a batch's writes into one statement: placeholders, counted writes, the notify, stable text."""

from __future__ import annotations

import pytest

from db import bulk
from db.writes import Write, WriteCountMismatch, check_counts, compose, present


def test_placeholders_are_renumbered_after_the_writes_before_them() -> None:
    a = Write("a", "INSERT INTO a (x, y) SELECT * FROM unnest($1::int8[], $2::text[])", ([1], ["p"]))
    b = Write("b", "UPDATE b SET x = $2 WHERE y = $1 RETURNING 1", ("q", 7), expected=1)
    c = Write("c", "INSERT INTO c (z) VALUES ($1), ($1)", (True,), notify="chan")
    sql, args = compose([a, b, c])
    assert sql == (
        "WITH w0 AS (INSERT INTO a (x, y) SELECT * FROM unnest($1::int8[], $2::text[])),"
        " w1 AS (UPDATE b SET x = $4 WHERE y = $3 RETURNING 1),"
        " w2 AS (INSERT INTO c (z) VALUES ($5), ($5))"
        " SELECT (SELECT count(*) FROM w1), pg_notify($6, '')"
    )
    assert args == [[1], ["p"], "q", 7, True, "chan"]


def test_a_placeholder_without_its_argument_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\$3"):
        compose([Write("a", "INSERT INTO a VALUES ($1, $3)", (1, 2))])


def test_the_text_depends_on_which_writes_not_on_how_many_rows() -> None:
    def text(n: int) -> str:
        rows = [(i, f"s{i}") for i in range(n)]
        return compose(present(bulk.insert("t", ("a", "b"), ("int8", "jsonb"), rows)))[0]

    assert text(1) == text(500)
    assert bulk.insert("t", ("a",), ("int8",), []) is None


def test_a_counted_write_that_missed_rows_fails_the_batch() -> None:
    writes = [
        Write("plain", "INSERT INTO a VALUES ($1)", (1,)),
        Write("levels", "UPDATE b SET x = 1 WHERE y = $1 RETURNING 1", ("k",), expected=3),
        Write("outbox", "INSERT INTO c VALUES ($1)", (2,), notify="chan"),
    ]
    check_counts(writes, (3, None))
    with pytest.raises(WriteCountMismatch, match="levels: expected 3 rows, wrote 2"):
        check_counts(writes, (2, None))


def test_a_column_the_same_in_every_row_is_sent_once() -> None:
    rows = [(1, "x", "now"), (2, "y", "now")]
    write = bulk.insert("t", ("a", "b", "at"), ("int8", "text", "timestamptz"), rows, same=("at",))
    assert write is not None
    assert write.sql == (
        "INSERT INTO t (a, b, at) SELECT a, b, $3::timestamptz FROM"
        " (SELECT * FROM unnest($1::int8[], $2::text[]) AS t(a, b)) AS r"
    )
    assert write.args == ([1, 2], ["x", "y"], "now")
    # Rows that differ there after all: the column is an array again, nothing is lost.
    mixed = bulk.insert("t", ("a", "at"), ("int8", "timestamptz"), [(1, "then"), (2, "now")], same=("at",))
    assert mixed is not None
    assert mixed.args == ([1, 2], ["then", "now"])
    assert "unnest($1::int8[], $2::timestamptz[])" in mixed.sql
