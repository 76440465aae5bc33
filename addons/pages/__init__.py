"""Pages cliproxy serves itself (pure; no mitmproxy import): HTML and inline SVG built from plain data."""
