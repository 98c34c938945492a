"""cheroot serving the Bottle app from its own threads, so the event loop never waits on HTTP."""
from __future__ import annotations

import logging
import threading
from typing import Any

from cheroot import wsgi

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, app: Any, host: str, port: int, threads: int):
        self._server = wsgi.Server((host, port), app, numthreads=threads, server_name="phoenyra-ems")
        self._server.shutdown_timeout = 1
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind (raises OSError if the port is taken) and serve in a background thread."""
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name="web", daemon=True)
        self._thread.start()
        host, port = self._server.bind_addr[:2]
        log.info("serving on http://%s:%d", host, port)
        return host, port

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
