"""`serve`: answer agent commands one after another from a single long-lived process.

The host's connection multiplexer keeps one `serve` per device, so a warm fleet command
costs a request line instead of a Python start (~0.15 s here, more on a Jetson's cores).

Wire format, one JSON object per line each way:
  request  {"id": N, "argv": [command, args...], "stdin": base64 or null}
  reply    {"id": N, "exit": code, "stdout": text, "stderr": text}
Only short commands that answer and return are served; `serve` ends at end of input.
`info --deep` and `plan` import TensorFlow, which would then stay resident (hundreds of MB
on a 4 GB board) for the life of `serve`: they are answered by a forked child that exits.
`info --deep` whose answer the deep probe's cache holds imports nothing of the kind, and is
answered in this process: a fork and the imports it loses cost ~10 ms a request here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import traceback
from typing import IO, Callable, List, Optional

from .protocol import SERVED


def _imports_tensorflow(argv: List[str]) -> bool:
    """`plan` and `info --deep` (argparse also takes a prefix such as `--de`) import
    TensorFlow."""
    if argv[0] == "plan":
        return True
    return argv[0] == "info" and any(
        len(a) >= 3 and "--deep".startswith(a.split("=")[0]) for a in argv[1:]
    )


def _answer_in_child(main: Callable[[Optional[List[str]]], int], root: str, request: dict) -> dict:
    """`answer` in a forked child, so what it imports dies with it; the reply comes back
    as JSON through a pipe."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, write the reply, exit without cleanup handlers
        code = 1
        try:
            os.close(rfd)
            os.dup2(2, 1)  # native code writing to fd 1 must not corrupt the reply stream
            data = json.dumps(answer(main, root, request, fork=False)).encode()
            with os.fdopen(wfd, "wb") as pipe:
                pipe.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        reply = json.loads(data.decode())
        if isinstance(reply, dict):
            return reply
    except ValueError:
        pass
    return {
        "id": request.get("id"),
        "exit": 1,
        "stdout": "",
        "stderr": f"serve: the child answering {request.get('argv')!r} died "
        f"(wait status {status})\n",
    }


def answer(
    main: Callable[[Optional[List[str]]], int], root: str, request: dict, fork: bool = True
) -> dict:
    """Run one request through `main` with its stdin, capturing stdout and stderr.
    `fork`: run a request that imports TensorFlow in a child process."""
    argv = [str(a) for a in request.get("argv") or []]
    reply = {"id": request.get("id"), "exit": 2, "stdout": "", "stderr": ""}
    if not argv or argv[0] not in SERVED:
        reply["stderr"] = f"serve: not a served command: {argv[:1]!r}\n"
        return reply
    if fork and _imports_tensorflow(argv) and hasattr(os, "fork"):
        if argv[0] == "plan":
            return _answer_in_child(main, root, request)
        from . import facts

        # `info --deep` answers here while the device's deep probe is cached (a fork and
        # the imports it loses cost more than the answer); a probe goes to the child
        facts.set_cached_only(True)
        try:
            return _answer_here(main, root, argv, request, reply)
        except facts.ProbeNeeded:
            pass
        finally:
            facts.set_cached_only(False)  # before the fork: the child must probe
        return _answer_in_child(main, root, request)
    return _answer_here(main, root, argv, request, reply)


def _answer_here(
    main: Callable[[Optional[List[str]]], int],
    root: str,
    argv: List[str],
    request: dict,
    reply: dict,
) -> dict:
    from .facts import ProbeNeeded

    data = request.get("stdin")
    text = base64.b64decode(data).decode() if data else ""
    saved = sys.stdin, sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(text), out, err
    try:
        code = main(["--root", root] + argv)
    except SystemExit as exc:  # argparse refusing the arguments
        code = exc.code if isinstance(exc.code, int) else 2
    except ProbeNeeded:
        raise
    except Exception:  # a bug in one command must not take the server down
        traceback.print_exc()
        code = 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    reply.update(exit=code, stdout=out.getvalue(), stderr=err.getvalue())
    return reply


def serve(
    main: Callable[[Optional[List[str]]], int],
    root: str,
    inp: Optional[IO[str]] = None,
    outp: Optional[IO[str]] = None,
) -> int:
    """Answer request lines from `inp` until it ends."""
    inp = inp or sys.stdin
    outp = outp or sys.stdout
    for line in inp:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as exc:
            reply = {"id": None, "exit": 2, "stdout": "", "stderr": f"serve: {exc}\n"}
        else:
            reply = answer(main, root, request)
        outp.write(json.dumps(reply) + "\n")
        outp.flush()
    return 0
