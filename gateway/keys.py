"""``python -m gateway.keys``: make a new API key and the line of the key file that
stores it, as its hash (the key itself is shown once, here, and stored nowhere).

    $ python -m gateway.keys --name billing --send 'orders/*' --receive 'invoices/*'
    key:   5cV0... (give this to the client, for its X-API-Key header)
    entry: "sha256:9f86...": {"name": "billing", "send": ["orders/*"], ...}

``--hash KEY`` prints the hash of an existing key instead."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence

from amqp_core.grants import ACTIONS, Grants, GrantsError
from gateway.auth import hash_key

#: Random bytes in a key: 256 bits, so that its SHA-256 hash cannot be turned back.
KEY_BYTES = 32


def main(arguments: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.keys", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--name", help="the key's name in logs and metrics")
    for action in ACTIONS:
        parser.add_argument(
            f"--{action}", action="append", default=[], metavar="PATTERN", help=f"{action} grant"
        )
    parser.add_argument("--hash", metavar="KEY", help="only print the hash of this key")
    options = parser.parse_args(arguments)
    if options.hash is not None:
        print(hash_key(options.hash))
        return 0
    entry: dict[str, object] = {} if options.name is None else {"name": options.name}
    patterns = {action: getattr(options, action) for action in ACTIONS if getattr(options, action)}
    try:
        Grants(patterns, owner="the grants given")
    except GrantsError as error:
        print(f"python -m gateway.keys: {error}", file=sys.stderr)
        return 2
    entry.update(patterns)
    key = secrets.token_urlsafe(KEY_BYTES)
    print(f"key:   {key}")
    print(f"entry: {json.dumps(hash_key(key))}: {json.dumps(entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
