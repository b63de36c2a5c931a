"""`python -m device_agent` / `python edge-agent-<version>.pyz`: the agent's command line.

Every command prints JSON on stdout. A user or environment error prints one JSON object
{"error", "hint"} and exits with EXIT_AGENT_ERROR, so the host can show it as data.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import TYPE_CHECKING, List, Optional, Union

from .bootstrap import writable_by_others
from .errors import AgentError

if TYPE_CHECKING:
    from .protocol import JobSpec

EXIT_AGENT_ERROR = 3
DEFAULT_ROOT = "~/.edge"


def _print(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


# every subcommand, in the order `--help` lists them
COMMANDS = (
    "info", "submit", "follow", "status", "result", "cancel", "jobs", "plan", "push-plan",
    "push-commit", "push-receive", "cache", "manifest", "gc", "serve", "_work",
)  # fmt: skip


# the commands of every probe and push, which start without the job machinery
QUICK = ("info", "push-plan", "push-commit", "push-receive")


class _Unused:
    """Stands in for the subparser of a command that this run does not parse."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        pass


def command_of(argv: List[str]) -> Optional[str]:
    """The subcommand `argv` names, where that is certain; None: any other shape (an
    abbreviated option, --help, no or an unknown command), which gets the whole parser."""
    i = 0
    while i < len(argv):
        if argv[i] == "--root":
            i += 2
        elif argv[i].startswith("--root="):
            i += 1
        else:
            return argv[i] if argv[i] in COMMANDS else None
    return None


def _parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    only = command_of(sys.argv[1:] if argv is None else argv)
    return _parser_for(os.environ.get("EDGE_AGENT_ROOT", DEFAULT_ROOT), only)


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, at the width it would use, without its `import shutil` (with
    the compressors shutil loads: ~5 ms of every start, for help text never shown)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                columns = 0
        super().__init__(prog, width=(columns or 80) - 2)


@functools.lru_cache(maxsize=32)
def _parser_for(default_root: str, only: Optional[str] = None) -> argparse.ArgumentParser:
    """Built once per process and command: `serve` parses every request with it. `only`:
    the one subcommand to build (each costs a start ~0.4 ms; all of them, ~6 ms)."""
    p = argparse.ArgumentParser(
        prog="edge-agent", description="jetson-edge device agent", formatter_class=_Formatter
    )
    p.add_argument(
        "--root",
        default=default_root,
        help="device root directory (default ~/.edge)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def add(
        name: str, help: Optional[str] = None, description: Optional[str] = None
    ) -> Union[argparse.ArgumentParser, _Unused]:
        assert name in COMMANDS, name
        if only not in (None, name):
            return _Unused()
        if help is None:  # no help: not listed by --help (the worker's own command)
            return sub.add_parser(name, description=description, formatter_class=_Formatter)
        return sub.add_parser(name, help=help, description=description, formatter_class=_Formatter)

    info = add("info", help="device facts as JSON")
    info.add_argument(
        "--sysroot",
        default=None,
        help="read system files under this root (default: agent.json, or /)",
    )
    info.add_argument("--deep", action="store_true", help="also import TensorFlow (TensorRT)")
    submit = add("submit", help="submit a job (JOB.json, or - for stdin)")
    submit.add_argument("job")
    submit.add_argument("--detach", action="store_true", help="print the job id and return")
    follow = add("follow", help="stream a job's events (JSON lines)")
    follow.add_argument("job_id")
    follow.add_argument("--offset", type=int, default=0, help="first event line to send")
    follow.add_argument("--timeout", type=float, default=None, help="stop after SECONDS")
    for name, helptext in (
        ("status", "a job's status"),
        ("result", "a job's result"),
        ("cancel", "cancel a job"),
    ):
        sp = add(name, help=helptext)
        sp.add_argument("job_id")
    add("jobs", help="list jobs")
    add(
        "plan",
        help="the device's decisions for a convert JobSpec (stdin): "
        "backend, options, memory plan, cache key, calibration",
    )
    plan = add("push-plan", help="what the device lacks for a Manifest (stdin)")
    plan.add_argument(
        "--ranged-min",
        type=int,
        default=None,
        metavar="BYTES",
        help="prepare the uploads; blobs with more left go in byte ranges",
    )
    add("push-commit", help="verify uploads and materialize a Manifest (stdin)")
    add("push-receive", help="write a push's framed byte stream (stdin) into the store's uploads")
    cache = add("cache", help="whether a converted model is cached under KEY")
    cache.add_argument("key")
    manifest = add("manifest", help="the Manifest of a directory under the root")
    manifest.add_argument("path")
    gc = add(
        "gc",
        help="remove what no kept job needs: older jobs, unused models, blobs, caches",
        description="Keeps the KEEP most recent finished jobs (by creation time), every live "
        "job, and what they use (models, calibration data, converted models, blobs); uploads "
        "and anything else younger than GRACE seconds; the newest TensorRT timing cache. "
        "Never touches the agent. Answers what it removed, per category, with bytes freed.",
    )
    gc.add_argument("--keep", type=int, default=5, help="finished jobs to keep (default 5)")
    gc.add_argument("--dry-run", action="store_true", help="report, remove nothing")
    gc.add_argument(
        "--grace",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="keep uploads and unused entries younger than this (default 3600)",
    )
    add("serve", help="answer commands as JSON lines on stdin (for the host)")
    work = add("_work")  # the detached worker; not for people
    work.add_argument("job_id")
    return p


def _absolute_paths(spec: JobSpec) -> None:
    """Relative paths in a job mean the submitter's cwd (the login's home); the worker
    runs in its job directory."""
    for name in spec.PATHS:
        value = getattr(spec, name)
        if isinstance(value, str) and value:
            setattr(spec, name, os.path.abspath(os.path.expanduser(value)))


def _check_root(root: str) -> None:
    problem = writable_by_others(os.path.abspath(os.path.expanduser(root)))
    if problem:
        raise AgentError(*problem)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser(argv).parse_args(argv)
    try:
        _check_root(args.root)
        return _dispatch(args)
    except AgentError as exc:
        _print({"error": exc.message, "hint": exc.hint})
        return EXIT_AGENT_ERROR


def _quick(args: argparse.Namespace) -> Optional[int]:
    """The commands that every probe and push runs (info, push-*): they import neither the
    job machinery nor the job and result types, which would cost a board ~10 ms a start."""
    if args.command == "info":
        from .config import load_config
        from .facts import collect

        root = os.path.abspath(os.path.expanduser(args.root))
        sysroot = args.sysroot or load_config(root).sysroot
        _print(collect(sysroot=sysroot, deep=args.deep, root_dir=root).to_dict())
        return 0
    if args.command in ("push-plan", "push-commit"):
        from .manifest import manifest_from_json
        from .store import BlobStore

        blobs = BlobStore(args.root)
        manifest = manifest_from_json(sys.stdin.read())
        push = (
            blobs.plan(manifest, args.ranged_min)
            if args.command == "push-plan"
            else blobs.commit(manifest)
        )
        _print(push.to_dict())
        return 0
    if args.command == "push-receive":
        from .receive import receive

        _print(receive(args.root, sys.stdin.buffer, _print).to_dict())
        return 0
    return None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from .serve import serve

        stdin, stdout = sys.stdin, sys.stdout  # requests swap these while they run
        return serve(main, args.root, stdin, stdout)
    quick = _quick(args)
    if quick is not None:
        return quick
    from .jobs import JobStore, agent_command, load_spec, run_worker
    from .protocol import SUCCEEDED

    store = JobStore(args.root)
    if args.command == "submit":
        if args.job == "-":
            text = sys.stdin.read()
        else:
            with open(args.job) as f:
                text = f.read()
        spec = load_spec(text)
        _absolute_paths(spec)
        job_id = store.create(spec)
        store.spawn_worker(job_id, agent_command())
        if args.detach:
            _print({"job_id": job_id})
            return 0
        store.follow(job_id, 0, sys.stdout)
        return 0 if store.read_state(job_id).status == SUCCEEDED else 1
    if args.command == "follow":
        store.follow(args.job_id, args.offset, sys.stdout, timeout=args.timeout)
        return 0
    if args.command == "status":
        _print(store.reconcile(args.job_id).to_dict())
        return 0
    if args.command == "result":
        _print(store.result(args.job_id))
        return 0
    if args.command == "cancel":
        _print(store.cancel(args.job_id).to_dict())
        return 0
    if args.command == "jobs":
        _print([s.to_dict() for s in store.list()])
        return 0
    if args.command == "plan":
        from .jobplan import plan_convert

        spec = load_spec(sys.stdin.read())
        _absolute_paths(spec)
        _print(plan_convert(spec, store.root).to_dict())
        return 0
    if args.command == "cache":
        from .convert import ModelCache

        _print({"key": args.key, "hit": ModelCache(store.root).lookup(args.key) is not None})
        return 0
    if args.command == "manifest":
        from .manifest import build_manifest

        path = os.path.abspath(os.path.join(store.root, os.path.expanduser(args.path)))
        if not (path + os.sep).startswith(store.root + os.sep):
            raise AgentError(f"{path} is outside the device root {store.root}.")
        if not os.path.isdir(path):
            raise AgentError(f"{path} is not a directory on this device.")
        _print(build_manifest(path).to_dict())
        return 0
    if args.command == "gc":
        from .gc import gc

        _print(gc(store.root, args.keep, args.dry_run, args.grace).to_dict())
        return 0
    if args.command == "_work":
        from .runner import run_job

        return run_worker(store, args.job_id, run_job)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
