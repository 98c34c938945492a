"""History: SQLite store in tiers (blocking, executor-only), the recorder that feeds it in batches, and the
analytics read from it."""
from .channels import MEASURED
from .recorder import HistoryRecorder
from .store import HistoryStore

__all__ = ["HistoryRecorder", "HistoryStore", "MEASURED"]
