"""The mitmweb internals `addons/mitm/webview.py` relies on still exist with the shape it uses (fast;
no proxy run). If one fails after a mitmproxy upgrade, that module needs a look before its version
fence is widened."""

import inspect

from mitmproxy.addons.view import View
from mitmproxy.hooks import UpdateHook
from mitmproxy.tools.web.master import WebMaster
from mitmproxy.tools.web.webaddons import WebAddon

from cliproxy.addons.mitm import webview


def test_the_installed_mitmproxy_passes_the_fence():
    assert webview.supported(View())
    assert not webview.supported(View(), "13.0.0") and not webview.supported(object())


def test_view_internals():
    view = View()
    assert callable(view.sig_view_update.send)
    assert "sig_view_update.send(flow=f)" in inspect.getsource(View.update)  # the signal mitmweb listens to, keyword `flow`
    assert list(inspect.signature(View.get_by_id).parameters) == ["self", "flow_id"]
    assert list(inspect.signature(View.add).parameters) == ["self", "flows"]
    assert UpdateHook.name == "update"


def test_mitmweb_pushes_the_views_update_signal_to_the_browser():
    source = inspect.getsource(WebMaster.__init__)
    assert "self.view.sig_view_update.connect(self._sig_view_update)" in source
    assert 'broadcast_flow("flows/update", flow)' in inspect.getsource(WebMaster._sig_view_update)


def test_mitmweb_options_cliproxy_sets():
    from mitmproxy import optmanager

    opts = optmanager.OptManager()
    WebAddon().load(opts)  # an OptManager takes options as a loader does
    from mitmproxy.tools.web.web_columns import AVAILABLE_WEB_COLUMNS

    from cliproxy.addons.hooks.notes import WEB_COLUMNS

    assert "comment" not in opts.default("web_columns")  # why cliproxy sets it
    assert set(WEB_COLUMNS) <= set(AVAILABLE_WEB_COLUMNS)
