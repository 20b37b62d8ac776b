"""uvicorn's HTTP/1.1 protocol (h11) with a time limit on a request's head, which it lacks.

uvicorn closes a keep-alive connection that stays idle, but a connection that has sent part of a
request head (a first request, or one byte of the next) is held until the client closes it: the
way a slow client keeps sockets and shutdown waiting. Here the head must be complete within
`head_timeout_s` of the connection opening or of the previous answer; the body's own limit is
the app's (server.py).
"""

import asyncio

from absl import logging
from uvicorn.protocols.http.h11_impl import H11Protocol


def with_head_timeout(head_timeout_s: float) -> type[H11Protocol]:
  """The protocol class to give uvicorn.Config(http=...)."""

  class HeadTimeoutProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request head is late."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport):
      super().connection_made(transport)
      self._await_head()

    def on_response_complete(self) -> None:
      super().on_response_complete()  # may already have read the next, pipelined, head
      self._await_head()

    def handle_events(self) -> None:
      super().handle_events()
      if self._in_request():
        self._stop_timer()

    def connection_lost(self, exc) -> None:
      self._stop_timer()
      super().connection_lost(exc)

    def _in_request(self) -> bool:
      return self.cycle is not None and not self.cycle.response_complete

    def _stop_timer(self) -> None:
      if self._head_timer is not None:
        self._head_timer.cancel()
        self._head_timer = None

    def _await_head(self) -> None:
      self._stop_timer()
      if not self.transport.is_closing() and not self._in_request():
        self._head_timer = self.loop.call_later(head_timeout_s, self._head_is_late)

    def _head_is_late(self) -> None:
      self._head_timer = None
      if not self.transport.is_closing() and not self._in_request():
        logging.warning('closed a connection of %s:%s: no complete request head within %g s',
                        *(self.client or ('?', '?')), head_timeout_s)
        self.transport.close()

  return HeadTimeoutProtocol
