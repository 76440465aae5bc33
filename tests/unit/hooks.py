"""Drive a flow through a chain of addons with mitmproxy's own dispatch (its addon manager), in the
order mitmproxy's HTTP layer fires the hooks: every addon sees every event, whether or not an
earlier one answered; an answer set by `request` is followed by `responseheaders` and `response`,
as the layer does for responses made by addons."""

from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook, HttpResponseHeadersHook, HttpResponseHook
from mitmproxy.test import taddons

EVENTS = {"requestheaders": HttpRequestHeadersHook, "request": HttpRequestHook}


async def run_hooks(chain, flow, hooks=("requestheaders", "request")):
    """Fire `hooks` on `flow` through `chain` via the addon manager; returns the flow."""
    with taddons.context(*chain) as tctx:
        for hook in hooks:
            await tctx.master.addons.handle_lifecycle(EVENTS[hook](flow))
        if "request" in hooks and flow.response is not None:
            await tctx.master.addons.handle_lifecycle(HttpResponseHeadersHook(flow))
            await tctx.master.addons.handle_lifecycle(HttpResponseHook(flow))
    return flow
