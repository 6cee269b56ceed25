"""The HTTP server under the tests' own fakes (an OpenAI-compatible LLM, a model server, a webhook receiver)."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class FakeHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` whose handler threads never hold up the exit, and which stays quiet when the
    client under test hangs up mid-reply (a timeout test does so on purpose); any other error in a handler
    is still printed."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipe, ConnectionReset, ConnectionAborted
            return
        super().handle_error(request, client_address)
