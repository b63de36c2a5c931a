"""`edge pull JOB --to DEVICE --out DIR`: bring a converted model back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.agent.sessions import open_client
from edge.cli._utils import JsonOpt, console, pick_targets, print_json, targets_option
from edge.core.errors import EdgeError
from edge.core.untrusted import safe_text
from edge.fleet.devices import resolve_targets
from edge.ops.pull import pull_job_model


def pull(
    job: Annotated[
        str,
        typer.Argument(help="A convert run (r12, see edge runs ls) or job id (see edge jobs ls)."),
    ],
    out: Annotated[Path, typer.Option(help="New local directory for the model.")],
    to: Annotated[Optional[str], targets_option("the run's device (a job id needs it)")] = None,
    legacy: Annotated[Optional[str], typer.Option("--from", hidden=True)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Download a converted model from a device, verifying every file's sha256."""
    source = pick_targets(to, legacy, None)
    if re.fullmatch(r"r?\d+", job):  # a run id from the run history
        from edge.history.store import RunStore

        with RunStore() as store:
            run = store.get(job)
        if run.kind != "convert" or not run.job_id:
            raise EdgeError(
                f"Run {job} is a {run.kind} run with no converted model.",
                "Pass a convert run: edge runs ls --kind convert",
            )
        job, source = run.job_id, source or run.device
    if source is None:
        raise EdgeError("Which device ran the job?", "Pass --to DEVICE (or a run id).")
    devices = resolve_targets(source)
    if len(devices) != 1:
        raise EdgeError("pull takes exactly one device.", "e.g. --to nano1")
    with open_client(devices[0]) as client:
        manifest, path = pull_job_model(client, job, out.expanduser().resolve())
    if json_out:
        print_json(
            {
                "device": devices[0].name,
                "job_id": job,
                "out": str(path),
                "files": len(manifest.entries),
                "bytes": manifest.total_bytes(),
            }
        )
    else:
        console.print(
            safe_text(
                f"pulled {len(manifest.entries)} files "
                f"({manifest.total_bytes() / 1e6:.1f} MB) of job {job} to {path}"
            ),
            highlight=False,
        )
