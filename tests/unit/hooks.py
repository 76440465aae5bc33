"""Drive a flow through a chain of addons the way mitmproxy does: each hook across every addon in turn."""

from mitmproxy.test import taddons


async def run_hooks(chain, flow, hooks=("requestheaders", "request")):
    """Run `hooks` on `flow` through `chain` (sync or async hooks), stopping once a response is set."""
    with taddons.context(*chain):
        for hook in hooks:
            for addon in chain:
                fn = getattr(addon, hook, None)
                if fn and not flow.response:
                    res = fn(flow)
                    if hasattr(res, "__await__"):
                        await res
    return flow
