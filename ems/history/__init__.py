"""History: SQLite store (blocking, executor-only) and the recorder task that feeds it in batches."""
from .recorder import HistoryRecorder
from .store import TELEMETRY_COLUMNS, HistoryStore

__all__ = ["HistoryRecorder", "HistoryStore", "TELEMETRY_COLUMNS"]
