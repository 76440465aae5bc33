"""The small HTML pages the loopback callback server shows in the browser."""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - cliproxy</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #f6f7f9; color: #1f2328; display: flex;
       min-height: 100vh; align-items: center; justify-content: center; margin: 0; }}
main {{ background: #fff; border-radius: 12px; box-shadow: 0 2px 12px rgba(0,0,0,.08); padding: 2rem 2.5rem;
       max-width: 32rem; }}
h1 {{ font-size: 1.4rem; margin-top: 0; color: {color}; }}
code {{ background: #f0f1f3; padding: .1rem .3rem; border-radius: 4px; }}
</style></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""


def success_page() -> str:
    return _PAGE.format(
        title="Signed in",
        color="#1a7f37",
        body="<p>cliproxy saved your ChatGPT login. You can close this tab and return to the terminal.</p>"
        "<script>setTimeout(function () { window.close(); }, 3000);</script>",
    )


def error_page(message: str, hint: str = "Return to the terminal and run <code>cliproxy login</code> again.") -> str:
    return _PAGE.format(title="Sign-in failed", color="#cf222e", body=f"<p>{escape(message)}</p><p>{hint}</p>")


def info_page(title: str, message: str) -> str:
    return _PAGE.format(title=escape(title), color="#1f2328", body=f"<p>{escape(message)}</p>")
