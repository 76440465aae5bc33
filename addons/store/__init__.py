"""Conversation state kept by cliproxy (pure; no mitmproxy import): stored responses, conversations and
their items, behind one interface (`responses.ResponseStore`) with an SQLite implementation."""
