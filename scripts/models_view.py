"""The `cliproxy models` listing: the merged catalog as the proxy would use it, one row per model."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from cliproxy.addons.core.runtime import Runtime
from cliproxy.auth.store import Account


def model_rows(runtime: Runtime) -> list[dict[str, Any]]:
    """Model, efforts, context window, lite or classic, who serves it and where the entry came from."""
    members = [m for m in runtime.pool.members if isinstance(m.source, Account)]
    rows = []
    for info in runtime.config.settings.catalog.models.values():
        serving = [m.label for m in members if m.serves(info.id)]
        rows.append(
            {
                "model": info.id,
                "listed": info.listed,
                "efforts": list(info.levels),
                "context_window": info.context_window,
                "form": "lite" if info.lite else "classic",
                "service_tier": info.service_tier,
                "accounts": serving,
                "all_accounts": bool(members) and len(serving) == len(members),
                "source": info.source,
            }
        )
    return rows


def models_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="cliproxy model catalog", title_justify="left")
    for name in ("model", "efforts", "context", "form", "accounts", "source"):
        table.add_column(name, overflow="fold")
    for r in rows:
        model = r["model"] if r["listed"] else f"{r['model']} [dim](hidden)[/]"
        accounts = "all" if r["all_accounts"] else (", ".join(r["accounts"]) or "[red]none[/]")
        efforts = ", ".join(r["efforts"]) or "-"
        table.add_row(model, efforts, f"{r['context_window'] // 1000}k", r["form"], accounts, r["source"])
    return table
