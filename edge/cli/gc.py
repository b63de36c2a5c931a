"""`edge gc --to TARGETS`: free each device's store of what no kept job needs."""

from __future__ import annotations

from typing import Annotated

import typer

from edge.cli._utils import JsonOpt, TargetsOpt, console, err_console, print_json
from edge.fleet.devices import resolve_targets
from edge.ops.gc import DEFAULT_KEEP, GRACE_SECONDS, collect_garbage
from edge.views.gc import gc_table, human_bytes, print_notes
from edge.views.tables import print_failures

HELP = f"""Free the device store: old jobs, and the models, blobs and caches no kept job uses.

Each device decides and answers what it removed, per category, with the bytes freed.
Kept: the --keep most recent finished jobs (by creation time), every running or queued
job, and what they use (their models, calibration data and converted models, the blobs
of those, their TensorRT calibration caches); uploads and anything else younger than
--grace (a push or a conversion in flight); the newest TensorRT timing cache; the agent.
While a convert job runs, the converted-model cache is left alone. A later push re-sends
only what gc removed. Default: --keep {DEFAULT_KEEP}, --grace {GRACE_SECONDS:.0f} seconds.
"""


def gc(
    to: TargetsOpt = "local",
    keep: Annotated[
        int,
        typer.Option(min=0, metavar="N", help="Finished jobs to keep per device, the most recent."),
    ] = DEFAULT_KEEP,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be freed; remove nothing.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            min=0, metavar="SECONDS", help="Keep uploads and unused entries younger than this."
        ),
    ] = GRACE_SECONDS,
    json_out: JsonOpt = False,
) -> None:
    run = collect_garbage(resolve_targets(to), keep=keep, dry_run=dry_run, grace=grace)
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        if run.succeeded:
            console.print(gc_table(run.results, dry_run))
            total = sum(r.bytes_freed for r in run.succeeded)
            verb = "would free" if dry_run else "freed"
            console.print(f"{verb} {human_bytes(total)} in all", highlight=False)
        print_notes(err_console, run.succeeded)
        print_failures(err_console, run.results)
    if not run.ok:
        raise typer.Exit(1)
