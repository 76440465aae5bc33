"""mitmweb's flow list, kept current while a flow runs (mitmweb 12 internals, fenced).

mitmweb pushes a flow to the browser whenever its view is updated: after every hook a flow goes through
(mitmproxy runs the public `update` hook after each), and when an addon triggers `update` itself.
Mid-flight a flow holds the upstream request (the backend's URL), which is not what the list should show;
so `show` sends the view's update signal with a shallow copy that carries the client's request (the flow
itself is not touched), called just after mitmweb's own push. That signal is mitmweb 12's internal, so
`supported` checks the version and the attributes used, and `tests/unit/test_webview_contract.py` checks
their shape in milliseconds; where they are missing, a running flow shows as mitmproxy has it, and the
client's side once it is answered.
"""

from __future__ import annotations

import copy
import logging

from mitmproxy import ctx, http, version

from cliproxy.addons.mitm import fence

logger = logging.getLogger(__name__)

#: What `show` uses of mitmproxy.addons.view.View.
VIEW_INTERNALS = ("sig_view_update", "get_by_id", "add")


def under_mitmweb() -> bool:
    """Whether this proxy runs as mitmweb (only mitmweb defines its column option)."""
    return hasattr(getattr(ctx, "options", None), "web_columns")  # no options at all: not in a running proxy


def supported(view: object, found: str = version.VERSION) -> bool:
    return fence.supported(found) and all(hasattr(view, name) for name in VIEW_INTERNALS)


def show(flow: http.HTTPFlow, request: http.Request | None) -> None:
    """Push the flow to mitmweb's list now, showing `request` (the client's) in place of the flow's own."""
    if not under_mitmweb():
        return
    view = getattr(ctx.master, "view", None)
    try:
        if view is None or not supported(view) or view.get_by_id(flow.id) is None:
            return  # not in the list (yet, or filtered out)
        shown = copy.copy(flow)  # shares everything but the attributes set here
        if request is not None:
            shown.request = request
        view.sig_view_update.send(flow=shown)
    except Exception:  # the list is a convenience: never let it break a flow
        logger.exception("cliproxy: could not update mitmweb's flow list")


def add(flow: http.HTTPFlow) -> bool:
    """Add a flow made by cliproxy (an image an answer carried) to mitmweb's list."""
    view = getattr(ctx.master, "view", None)
    if not under_mitmweb() or view is None or not supported(view):
        return False
    view.add([flow])
    return True
