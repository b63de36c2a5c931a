"""`edge report RUN... --out DIR`: an HTML page with tables and plots of stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge.cli._utils import JsonOpt, console, print_json
from edge.core.untrusted import safe_text
from edge.views.report import build_report


def report(
    runs: Annotated[list[str], typer.Argument(help="Run ids (r12 or 12); see `edge runs ls`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write into.")] = Path(
        "edge-report"
    ),
    json_out: JsonOpt = False,
) -> None:
    """Write report.html (self-contained: plots embedded) and the PNG plots for runs."""
    rep = build_report(runs, out)
    if json_out:
        print_json(
            {
                "html": str(rep.html),
                "plots": [str(p) for p in rep.plots],
                "skipped": rep.skipped,
                "headline": rep.headline,
                "outliers": rep.outliers,
            }
        )
        return
    for line in rep.headline:
        console.print(safe_text(line), highlight=False)
    console.print(f"wrote [bold]{safe_text(rep.html)}[/]", highlight=False)
    for png in rep.plots:
        console.print(f"  {safe_text(png)}", highlight=False)
    for title, why in rep.skipped.items():
        console.print(f"  [dim]{safe_text(title)}: skipped, {safe_text(why)}[/]", highlight=False)
