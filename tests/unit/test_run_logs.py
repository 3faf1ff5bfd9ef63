"""The pieces of `invmon run` and `invmon logs` that need no process: the Procfile, the size-bounded
files, and following one command (and the events it caused) through merged lines."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from invmon.logs import CommandFilter, Tail, follow, read_all
from invmon.runner import SizeBoundedLog, console_renderer, parse_procfile


def test_the_procfile_is_read_in_order_and_a_bad_line_is_refused() -> None:
    text = "# comment\nedge: python -m api_edge.main\n\nworker:  python -m workers.x  --flag\n"
    assert parse_procfile(text) == {
        "edge": "python -m api_edge.main",
        "worker": "python -m workers.x  --flag",
    }
    with pytest.raises(ValueError, match="not a Procfile line"):
        parse_procfile("edge python -m api_edge.main")


def test_a_process_log_stays_under_its_size_keeping_one_rotated_file(tmp_path: Path) -> None:
    log = SizeBoundedLog(tmp_path / "edge.log", max_bytes=100)
    for n in range(30):
        log.write(f"line {n:02d} ".encode() + b"x" * 20 + b"\n")
    log.close()
    current, rotated = (tmp_path / "edge.log").read_bytes(), (tmp_path / "edge.log.1").read_bytes()
    assert len(current) <= 100
    assert len(rotated) <= 100
    assert current.splitlines()[-1].startswith(b"line 29")
    assert rotated.splitlines()[-1].split()[1] == f"{int(current.split()[1]) - 1:02d}".encode()


def _write(path: Path, *lines: dict[str, object]) -> None:
    with path.open("ab") as handle:
        handle.writelines(orjson.dumps(line) + b"\n" for line in lines)


def test_a_command_is_followed_through_its_event_ids_in_time_order(tmp_path: Path) -> None:
    c, other = "c-1", "c-2"
    # The notifier's line names only the event, and its file sorts before the worker's.
    _write(tmp_path / "notifier.log", {"timestamp": "T3", "event": "delivery_attempt", "event_id": "e-1"})
    _write(tmp_path / "notifier.log", {"timestamp": "T3", "event": "delivery_attempt", "event_id": "e-9"})
    _write(tmp_path / "edge.log", {"timestamp": "T1", "event": "http_request", "command_id": c})
    _write(tmp_path / "edge.log", {"timestamp": "T1", "event": "http_request", "command_id": other})
    with (tmp_path / "edge.log").open("ab") as handle:
        handle.write(b"Traceback (most recent call last):\n")
    _write(tmp_path / "stock_worker.log", {"timestamp": "T2", "command_id": c, "event_id": "e-1"})
    _write(tmp_path / "stock_worker.log", {"timestamp": "T2", "command_id": other, "event_id": "e-9"})
    lines, tails = read_all(tmp_path)
    kept = [(source, line["timestamp"]) for source, line in filter(CommandFilter(c), lines)]
    assert kept == [("edge", "T1"), ("stock_worker", "T2"), ("notifier", "T3")]
    only_edge = list(filter(CommandFilter(c, frozenset({"edge"})), lines))
    assert [source for source, _ in only_edge] == ["edge"]
    assert len(tails) == 3


def test_a_tail_reads_only_new_complete_lines_and_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "edge.log"
    path.write_bytes(b'{"a": 1}\n{"a"')
    tail = Tail(path)
    assert tail.read() == [b'{"a": 1}']
    path.open("ab").write(b": 2}\n")
    assert tail.read() == [b'{"a": 2}']
    path.replace(tmp_path / "edge.log.1")
    path.write_bytes(b'{"a": 3}\n')
    assert tail.read() == [b'{"a": 3}']
    assert tail.source == "edge"


def test_the_console_shows_json_lines_for_a_person_and_other_lines_as_they_are() -> None:
    show = console_renderer(colors=False)
    line = show(
        "edge", orjson.dumps({"event": "http_request", "level": "info", "status": 202, "process": "x"})
    )
    assert line.startswith("edge")
    assert "http_request" in line
    assert "status=202" in line
    assert "process" not in line
    assert show("edge", b"Traceback (most recent call last):\n").endswith(
        "| Traceback (most recent call last):"
    )


def test_follow_yields_new_lines_and_picks_up_a_process_file_that_appears_later(tmp_path: Path) -> None:
    _write(tmp_path / "edge.log", {"timestamp": "T1", "event": "old"})
    lines, tails = read_all(tmp_path)
    assert [line["event"] for _, line in lines] == ["old"]
    new = follow(tmp_path, tails, interval=0.0)
    _write(tmp_path / "edge.log", {"timestamp": "T2", "event": "new"})
    assert next(new) == ("edge", {"timestamp": "T2", "event": "new"})
    _write(tmp_path / "notifier.log", {"timestamp": "T3", "event": "late"})
    assert next(new) == ("notifier", {"timestamp": "T3", "event": "late"})
