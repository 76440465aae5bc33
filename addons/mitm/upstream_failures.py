"""Upstream failures on cliproxy's flows end in the client's format instead of mitmproxy's HTML.

mitmproxy (12.x) answers an upstream that cannot be reached, or that closes before answering, with
its own HTML 502 page, and an upstream that dies mid-stream by cutting the client's connection; its
`error` hook cannot change either. For flows cliproxy has claimed, this patch instead:

- before any response: sets a synthetic `502` response (JSON body, header `x-cliproxy-upstream-failure`)
  and runs the normal response path, so the addons' `response` hooks can fail over to another account
  or render the error in the client's format;
- mid-stream, when the stream callable sets `ends_on_upstream_error`: treats the break as the end of
  the upstream body, so the translator appends a terminal error event in the client's format and the
  client's response ends normally (keep-alive intact).

`abandon_upstream` closes a flow's upstream connection (for the request deadline, and once a translated
answer has ended at a client-set stop sequence or token limit), which then takes one of the paths above.

Every other flow keeps mitmproxy's behaviour. This leans on mitmproxy 12's internals, so `install`
refuses any other major version, and `tests/unit/test_mitm_contract.py` checks in milliseconds that
every internal used here still exists with the shape relied on (the e2e fault suites check behaviour).
"""

from __future__ import annotations

import json
import logging

from mitmproxy import ctx, http, version
from mitmproxy.proxy.layers.http import HttpStream, ResponseEndOfMessage, ResponseProtocolError

from cliproxy.addons.core.failover import FAILURE_HEADER
from cliproxy.addons.mitm import fence

logger = logging.getLogger(__name__)

_original = HttpStream.handle_protocol_error


def _handle_protocol_error(self: HttpStream, event):
    claimed = self.flow is not None and "cliproxy" in self.flow.metadata
    if claimed and isinstance(event, ResponseProtocolError) and self.client_state != self.state_errored:
        stream = getattr(self.flow.response, "stream", None)
        if self.server_state == self.state_stream_response_body and getattr(stream, "ends_on_upstream_error", False):
            if not self.flow.metadata["cliproxy"].get("ended_locally"):  # else cliproxy closed it at a client-set limit
                logger.warning(
                    "cliproxy: upstream broke off mid-stream (%s); ending the client's stream with an error event", event.message
                )
            yield from self.state_stream_response_body(ResponseEndOfMessage(self.stream_id))
            return
        if self.flow.response is None or self.server_state == self.state_consume_response_body:
            host = self.flow.request.pretty_host
            waited = self.flow.metadata["cliproxy"].get("timed_out")
            status, body = (
                (
                    504,
                    {
                        "error": {
                            "message": f"the upstream {host} did not start answering within {waited}s",
                            "type": "server_error",
                            "code": "upstream_timeout",
                        }
                    },
                )
                if waited
                else (
                    502,
                    {
                        "error": {
                            "message": f"cannot reach the upstream {host}: {event.message}",
                            "type": "server_error",
                            "code": "upstream_unreachable",
                        }
                    },
                )
            )
            self.flow.response = http.Response.make(status, json.dumps(body), {"content-type": "application/json", FAILURE_HEADER: "1"})
            yield from self.send_response()
            return
    yield from _original(self, event)


def abandon_upstream(flow: http.HTTPFlow) -> bool:
    """Close the flow's upstream connection (mitmproxy 12 internals); the layer then sees the upstream
    close before answering, which the patch above turns into a marked synthetic response."""
    server = ctx.master.addons.get("proxyserver")
    handler = getattr(server, "connections", {}).get(flow.client_conn.id)
    if handler is None or flow.server_conn not in getattr(handler, "transports", {}):
        return False
    handler.close_connection(flow.server_conn)
    return True


#: The internals used above: HttpStream's states and attributes, and the proxy server's connection table.
STREAM_INTERNALS = ("handle_protocol_error", "state_stream_response_body", "state_consume_response_body", "state_errored", "send_response")


def check_version(found: str = version.VERSION) -> None:
    fence.require(HttpStream, STREAM_INTERNALS, "to answer upstream failures in the client's format", found)


def install() -> None:
    """Idempotent: the script may be reloaded. Refuses a mitmproxy whose internals may differ."""
    check_version()
    if HttpStream.handle_protocol_error is not _handle_protocol_error:
        HttpStream.handle_protocol_error = _handle_protocol_error  # type: ignore[method-assign]  # the fenced patch itself
