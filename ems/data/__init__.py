"""The bundled data files (`ems/data/*.csv`, see SOURCES.md) and the one reader of their format.

Format: a header `timestamp,<quantity>_<unit>`, then one row per interval start, ISO-8601 timestamps
with their UTC offset (`2024-03-31T03:00:00+02:00`), in time order. Timestamps become epoch seconds,
so a daylight-saving day simply has 23 or 25 hours; a timestamp without an offset is refused (it
would be ambiguous twice a year). `read_series_file` reads any such file (the backtest reads the
user's files with it); `read_series` reads a bundled file by name, once per process.
Stdlib only: the long-running process imports this. Values are kept in `array('d')`s, 8 bytes each: a year of
15-minute load is 70,000 numbers, 2.2 MB more as Python floats in lists (the steady-RSS budget).
"""
from __future__ import annotations

import csv
import logging
import math
from array import array
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from ..resources import data_file

log = logging.getLogger(__name__)

ValueCheck = Callable[[float, str, str], Optional[str]]
"""(value in the internal unit, the cell's text, column) → what is wrong with it, or None."""


class SeriesFileError(ValueError):
    """A series file that cannot be used: which file, which line (1 = header) and column, and what is wrong."""

    def __init__(self, file: str, message: str, line: Optional[int] = None, column: Optional[str] = None):
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        where = file + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: " + (f"column '{column}': " if column else "") + message)


@dataclass(frozen=True)
class SeriesFile:
    """One file as read: interval starts (epoch s) and values (× the column's unit factor), the file
    line of each data row, and the number of CSV rows including the header."""

    path: str
    column: str
    ts: array[float]
    values: array[float]
    lines: array[int]
    n_rows: int


def parse_timestamp(text: str, file: str, line: int) -> float:
    """Epoch seconds of an ISO-8601 timestamp with a UTC offset, or SeriesFileError."""
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise SeriesFileError(file, f"'{raw}' is not an ISO-8601 timestamp (e.g. 2024-01-01T00:00:00+01:00)",
                              line, "timestamp") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise SeriesFileError(file, f"'{raw}' has no UTC offset (write e.g. 2024-01-01T00:00:00+01:00; "
                                    "without it local times repeat at the autumn DST change)", line, "timestamp")
    return moment.timestamp()


def read_series_file(path: str | Path, columns: Mapping[str, float] | None = None, role: str = "data",
                     check: ValueCheck | None = None) -> SeriesFile:
    """One `timestamp,<column>` file. `columns` maps the accepted column names (lower case) to their unit
    factor (None: any column, factor 1); `check` may refuse a value. Blank lines are skipped; anything
    else wrong raises SeriesFileError naming the file, the line and the column."""
    file = str(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise SeriesFileError(file, f"no such file (the {role} series)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SeriesFileError(file, f"cannot be read: {err}") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise SeriesFileError(file, f"is empty: expected a header 'timestamp,<quantity>_<unit>' for {role}", 1)
    header = [cell.strip() for cell in rows[0]]
    allowed_text = ", ".join(columns) if columns is not None else ""
    if len(header) != 2:
        expected = f"<one of {allowed_text}>" if columns is not None else "<quantity>_<unit>"
        raise SeriesFileError(file, f"header has {len(header)} columns, expected 2: 'timestamp,{expected}'", 1)
    if header[0].lower() != "timestamp":
        raise SeriesFileError(file, "the first column must be called 'timestamp'", 1, header[0])
    column = header[1].lower()
    if columns is not None and column not in columns:
        raise SeriesFileError(file, f"is not a {role} column (allowed: {allowed_text})", 1, header[1])
    factor = columns[column] if columns is not None else 1.0
    ts: array[float] = array("d")
    values: array[float] = array("d")
    lines: array[int] = array("l")
    for index, row in enumerate(rows[1:], start=2):
        if not "".join(row).strip():
            continue  # blank lines (a trailing newline) carry nothing
        if len(row) != 2:
            raise SeriesFileError(file, f"has {len(row)} fields, expected 2 (timestamp,{column})", index)
        t = parse_timestamp(row[0], file, index)
        text = row[1].strip()
        try:
            value = float(text)
        except ValueError:
            raise SeriesFileError(file, f"'{text}' is not a number", index, column) from None
        if not math.isfinite(value):
            raise SeriesFileError(file, f"'{text}' is not a finite number", index, column)
        value *= factor
        problem = check(value, text, column) if check is not None else None
        if problem is not None:
            raise SeriesFileError(file, problem, index, column)
        if ts and t <= ts[-1]:
            what = "repeats" if t == ts[-1] else "goes back before"
            raise SeriesFileError(file, f"timestamp {row[0].strip()} {what} the previous line's: rows must be "
                                        "in time order, one per interval", index, "timestamp")
        ts.append(t)
        values.append(value)
        lines.append(index)
    return SeriesFile(file, column, ts, values, lines, len(rows))


@lru_cache(maxsize=None)
def read_series(name: str) -> tuple[Sequence[float], Sequence[float]]:
    """A bundled file (`ems/data/<name>`) as (epoch seconds, values), parsed once per process; shared by every
    caller, so read-only (memoryviews of the arrays: indexing, slices, bisect and numpy all work; `np.asarray`
    gives a read-only array; pickle, JSON and `+` do not take a memoryview: `list()` or `array('d', …)` it)."""
    series = read_series_file(data_file(name), role=name)
    log.debug("loaded %s: %d samples", name, len(series.ts))
    return memoryview(series.ts).toreadonly(), memoryview(series.values).toreadonly()
