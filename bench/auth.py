"""Benchmark: what authentication costs a POST /messages, in one run.

Three gateways (each with its embedded broker) take the same wrk load, one after the
other, round after round: without authentication, with an API key (X-API-Key, a file of
1,000 keys), and with an RS256 bearer token (a JWKS file). Prints POSTs a second and
each one's ratio to the gateway without authentication.

Absolute rates on a shared 2-core machine are noise; compare within one run.

Usage: python bench/auth.py [--seconds S] [--connections C] [--rounds R]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parent.parent
BODY = '{"sequence": 1}'


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(folder: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "gateway", "--http", f"127.0.0.1:{port}"]
    command += ["--amqp-listen", f"127.0.0.1:{free_port()}", "--log-level", "warning", *flags]
    process = subprocess.Popen(command, cwd=REPO, stderr=(folder / f"{port}.log").open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the gateway {flags} did not start")


def load(
    folder: Path, url: str, headers: dict[str, str], seconds: float, connections: int
) -> float:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(BODY)}"]
    for name, value in {"Content-Type": "application/json", **headers}.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    script = folder / f"post-{secrets.token_hex(4)}.lua"
    script.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "-s",
            str(script),
            f"{url}/messages/bench",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in done.stdout:
        raise SystemExit(f"answers other than 2xx:\n{done.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        key = secrets.token_urlsafe(32)
        keys = {secrets.token_urlsafe(32): {"send": ["*"]} for _ in range(999)} | {
            key: {"send": ["*"]}
        }
        entries = {"sha256:" + hashlib.sha256(k.encode()).hexdigest(): v for k, v in keys.items()}
        (folder / "keys.json").write_text(json.dumps(entries))
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        (folder / "jwks.json").write_text(
            json.dumps({"keys": [{**jwk, "kid": "k", "alg": "RS256"}]})
        )
        claims = {
            "iss": "i",
            "aud": "a",
            "sub": "bench",
            "exp": int(time.time()) + 3600,
            "scope": "send:*",
        }
        token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k"})
        setups = {
            "no authentication": ((), {}),
            "API key": (("--api-keys", str(folder / "keys.json")), {"X-API-Key": key}),
            "bearer RS256": (
                (
                    "--jwt-jwks",
                    str(folder / "jwks.json"),
                    "--jwt-issuer",
                    "i",
                    "--jwt-audience",
                    "a",
                ),
                {"Authorization": f"Bearer {token}"},
            ),
        }
        running = {name: start(folder, *flags) for name, (flags, _) in setups.items()}
        try:
            rates: dict[str, list[float]] = {name: [] for name in setups}
            for _ in range(options.rounds):
                for name, (_, headers) in setups.items():
                    rate = load(
                        folder, running[name][1], headers, options.seconds, options.connections
                    )
                    rates[name].append(rate)
        finally:
            for process, _ in running.values():
                process.terminate()
                process.wait(timeout=15)
    base = max(rates["no authentication"])
    seconds = f"{options.seconds:g} s"
    print(f"POST /messages, wrk -c{options.connections}, best of {options.rounds} x {seconds}")
    for name, values in rates.items():
        each = ", ".join(f"{value:.0f}" for value in values)
        best = max(values)
        print(f"  {name:<18} {best:8.0f} /s   {best / base:.2f}   (rounds: {each})")


if __name__ == "__main__":
    main()
