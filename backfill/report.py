"""Human-readable views of a run: the summary table the demo and `status` print."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from core.timeframe import priority_key


def print_summary(console: Console, summary: dict, total: int, elapsed_s: float) -> None:
    if not summary:
        console.print(f"[red]gate not open after {elapsed_s:.1f}s[/red]")
        return
    table = Table(title=f"run {summary['run_id']}: {summary['status']}")
    for col in ("timeframe", "ok", "failed", "candles written", "requests", "task s (sum)"):
        table.add_column(col, justify="right" if col != "timeframe" else "left")
    for tf in sorted(summary["by_timeframe"], key=priority_key):
        row = summary["by_timeframe"][tf]
        table.add_row(
            tf,
            str(row["ok"]),
            str(row["failed"]),
            str(row["candles"]),
            str(row["requests"]),
            f"{row['seconds']:.1f}",
        )
    console.print(table)
    console.print(
        f"{len(summary['ready'])}/{total} series ready, {len(summary['failed'])} failed, "
        f"{len(summary['not_ready'])} not ready; {summary['requests']} requests, "
        f"{summary['retries']} retries; gate opened after {elapsed_s:.1f}s"
    )
    for f in summary["failed"]:
        console.print(f"[red]failed[/red] {f['series']}: {f['reason']} ({f['error']})")
    for f in summary["not_ready"]:
        console.print(f"[yellow]not ready[/yellow] {f['series']}: {f['reason']}")
