"""parallel-ssh baseline, run as its own process (it monkey-patches with gevent).

    python pssh_run.py --key KEY --host ADDR:DEST [--host ...] copy SRC
    python pssh_run.py --key KEY --host ADDR:DEST [--host ...] run COMMAND

`copy` is ParallelSSHClient.copy_file (SFTP, libssh2) of SRC into each host's DEST
directory; `run` is run_command on every host. Prints the seconds from the first
connection to the last host done; exits 1 if any host failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--key", required=True)
    p.add_argument("--user", default="root")
    p.add_argument("--host", action="append", required=True, metavar="ADDR:DEST")
    p.add_argument("mode", choices=("copy", "run"))
    p.add_argument("arg")
    args = p.parse_args(argv)

    from gevent import joinall
    from pssh.clients import ParallelSSHClient

    hosts = [h.partition(":")[0] for h in args.host]
    dests = [h.partition(":")[2] for h in args.host]
    t0 = time.monotonic()
    client = ParallelSSHClient(
        hosts,
        user=args.user,
        pkey=args.key,
        num_retries=1,
        pool_size=max(1, len(hosts)),
        timeout=60,
        allow_agent=False,
    )
    if args.mode == "copy":
        src = args.arg.rstrip("/")
        remote = "%(dest)s/" + os.path.basename(src)
        greenlets = client.copy_file(
            src, remote, recurse=os.path.isdir(src), copy_args=[{"dest": d} for d in dests]
        )
        joinall(greenlets, raise_error=True)
        ok = True
    else:
        output = client.run_command(args.arg, stop_on_errors=True)
        client.join(output)
        ok = True
        for host_out in output:
            for _ in host_out.stdout:
                pass
            if host_out.exit_code != 0:
                print(f"{host_out.host}: exit {host_out.exit_code}", file=sys.stderr)
                ok = False
    print(f"{time.monotonic() - t0:.4f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
