"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for a request's headers.

uvicorn closes a kept-alive connection that stays silent, but not one that sends a header byte
now and then, nor one that never finishes its first request: 2,000 such connections were all
held for as long as they liked. Here each connection has `seconds` from its opening, and from
each response on a kept-alive connection, to complete the next request's headers; then it is
closed. `taskyard serve` and `taskyard api` pass the class to `uvicorn.Config(http=...)`.

This relies on `H11Protocol`'s methods and its `cycle` and `transport` attributes, which are
uvicorn's internals: they are fenced in this module, and `tests/e2e/test_http_guard.py` checks
the deadline against a real server, so an upgrade of uvicorn that moves them fails there.
"""

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def with_header_timeout(seconds: float) -> type[H11Protocol]:
    """The h11 protocol class of uvicorn, closing connections slow to send their headers."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _awaiting_headers(self) -> bool:
            # A request's cycle starts when its headers are complete, and lasts until its
            # response is.
            return self.cycle is None or self.cycle.response_complete

        def _start_timer(self) -> None:
            self._stop_timer()
            self._header_timer = self.loop.call_later(seconds, self._too_slow)

        def _stop_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self._awaiting_headers() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._start_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._awaiting_headers():
                self._stop_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # A request that was already waiting (pipelined) has started a new cycle.
            if not self.transport.is_closing() and self._awaiting_headers():
                self._start_timer()

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            self._stop_timer()  # the WebSocket protocol takes the connection over
            super().handle_websocket_upgrade(event)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol
