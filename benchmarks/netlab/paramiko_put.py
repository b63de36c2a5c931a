"""paramiko baseline, run as its own process so its CPU is counted like the other tools'.

    python paramiko_put.py --key KEY --known-hosts FILE [--port 22] --host ADDR:DEST [...] SRC

Puts SRC into each host's DEST directory with paramiko's own `SFTPClient.put`, one thread
per host, aes128-gcm@openssh.com preferred (as edge prefers it). Host keys are checked
against FILE. Exits 1 if any host failed.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

GCM = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def prefer_gcm(preferred: tuple[str, ...]) -> tuple[str, ...]:
    """paramiko's cipher list with the AES-GCM ciphers it supports moved to the front."""
    first = tuple(c for c in GCM if c in preferred)
    return first + tuple(c for c in preferred if c not in first)


def put_one(
    addr: str, port: int, dest: str, src: Path, key: str, known_hosts: str, user: str
) -> None:
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        addr,
        port,
        username=user,
        key_filename=key,
        look_for_keys=False,
        allow_agent=False,
        timeout=60,
    )
    try:
        transport = client.get_transport()
        assert transport is not None
        cipher = getattr(transport, "remote_cipher", "")
        if cipher not in GCM:
            raise RuntimeError(f"negotiated {cipher}, not AES-GCM")
        with client.open_sftp() as sftp:
            sftp.put(str(src), f"{dest}/{src.name}")
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--key", required=True)
    p.add_argument("--known-hosts", required=True)
    p.add_argument("--user", default="root")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--host", action="append", required=True, metavar="ADDR:DEST")
    p.add_argument("src", type=Path)
    args = p.parse_args(argv)

    import paramiko

    ciphers = getattr(paramiko.Transport, "_preferred_ciphers")  # noqa: B009
    setattr(paramiko.Transport, "_preferred_ciphers", prefer_gcm(ciphers))  # noqa: B010
    errors: list[str] = []

    def work(host: str) -> None:
        addr, _, dest = host.partition(":")
        try:
            put_one(addr, args.port, dest, args.src, args.key, args.known_hosts, args.user)
        except Exception as exc:  # reported below; the other hosts go on
            errors.append(f"{addr}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(h,)) for h in args.host]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for err in errors:
        print(err, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
