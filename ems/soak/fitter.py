"""The soak's forecast fits: one long-lived fit child for every EMS incarnation of a soak, warmed up first.

Why: on site a fit child (`python -m ems.forecast.worker`) spends most of its few seconds importing
pandas, statsmodels and pvlib, at nice 10. That is nothing against a quarter-hour of plant time, but
on the soak's virtual clock plant time runs on while a fit is out (`loop.HOLD_S`): at a thousand
plant seconds per real second, an import-bound fit on a busy 2-core machine left the first EMS without
a PV forecast - so without a plan - for hours of plant time, and its planner retried every plant second
through an executor thread (a third of a 1-day soak's wall time). The backtest solved the same problem
with `ServingWorker` (`--serve`: one child, the same `handle` answering): the fits are exactly the
runtime's, only the imports are paid once - here before plant time starts.

The child lives as long as the soak (a killed EMS's fit child would be left running on site, too);
`fit` is serialised, since a killed incarnation's fit thread may still be waiting on its answer when
the next incarnation asks.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..config.schema import ForecastConfig
from ..forecast.pv import forecast_pv, pv_request
from ..forecast.worker import ServingWorker

log = logging.getLogger(__name__)


class SharedFitter:
    """`fit(request)` with `run_worker`'s contract, on one serving child; `close()` ends it."""

    def __init__(self) -> None:
        self._worker = ServingWorker()
        self._lock = threading.Lock()
        self.warmup_s: float | None = None

    def fit(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._worker.fit(request)

    def warm_up(self, cfg: ForecastConfig, start_ts: float) -> None:
        """One real PV fit (no history: clear sky × climatology), so the child has its imports done
        before the first EMS asks. Blocking, on purpose: it runs before plant time starts."""
        started = time.perf_counter()
        request = pv_request(start_ts, 96, latitude_deg=cfg.latitude_deg, longitude_deg=cfg.longitude_deg,
                             tilt_deg=cfg.pv_tilt_deg, azimuth_deg=cfg.pv_azimuth_deg, kwp=max(cfg.pv_peak_kwp, 1.0))
        _series, error = forecast_pv(request, self.fit)
        self.warmup_s = round(time.perf_counter() - started, 3)
        if error:
            log.warning("the soak's fit child failed its warm-up fit (%s): the EMS's fits will say why", error)

    @property
    def fits(self) -> int:
        return self._worker.fits

    @property
    def fit_s(self) -> float:
        """The child's own time in fits (the imports of the first one included)."""
        return self._worker.fit_s

    def close(self) -> None:
        with self._lock:
            self._worker.close()
