"""The web console (gateway/static/index.html, served at GET /) in a real headless
Chromium: a message published from the page shows up in the page's live stream, and so
does a message an AMQP client sends to the same address.

The browser is Debian's `chromium` (/usr/bin/chromium), driven by Playwright's Python
package with its own browser download never used (no `playwright install`). CI installs
both (.ci/run); when either is missing this test fails, it does not skip.

The gateway runs for real: `python -m gateway` in a subprocess, with its embedded broker,
on free ports, stopped by its PID (tests/gateway_fixtures.py).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_fixtures import GatewayServer

from amqp_core import Delivery, Message
from amqp_core.utils import BlockingConnection

#: Debian's Chromium; Playwright's own browser builds are never downloaded.
CHROMIUM = Path("/usr/bin/chromium")
#: What this machine's Chromium needs (/work/.library/env/machines/python.md): no
#: sandbox as root, no GPU, and none of the background connections that a closed network
#: refuses. Playwright adds --headless itself; the profile folder is a fresh one per test.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Milliseconds: the most any one browser step (launch, load, an expectation) may take.
BROWSER_TIMEOUT_MS = 20_000
#: Seconds for an AMQP client's calls.
AMQP_TIMEOUT = 10.0


@pytest.fixture
def running_gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    """The gateway with its embedded broker, ready; stopped by PID afterwards."""
    with GatewayServer(tmp_path) as gateway:
        yield gateway


def _playwright() -> Any:
    """Playwright's sync API, or a failure that says how to install what is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} is missing): run "
            "`apt-get install -y --no-install-recommends chromium` (as root). "
            "CI installs it (.ci/run); this test does not skip without it."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the Python package playwright is not installed: `pip install -e '.[test]'` "
            "(only the package: `playwright install` is not needed, the test drives "
            f"Debian's {CHROMIUM})"
        )
    return sync_playwright


def _send_with_amqp(address: str, node: str, body: Any) -> str:
    """Send one message with amqp_core's BlockingConnection; its delivery's outcome.

    Runs in a worker thread: BlockingConnection drives an asyncio loop of its own, which
    must not be started in the thread where Playwright's sync API keeps its loop."""
    connection = BlockingConnection(node, timeout=AMQP_TIMEOUT)
    try:
        delivery = connection.create_sender(address).send(Message(body=body))
        return (
            "accepted" if delivery.remote_state == Delivery.ACCEPTED else str(delivery.remote_state)
        )
    finally:
        connection.close()


def test_console_streams_what_the_page_and_an_amqp_client_publish(
    running_gateway: GatewayServer, tmp_path: Path
) -> None:
    sync_playwright = _playwright()
    from playwright.sync_api import expect

    address = f"console-test/{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex
    page_body = f'{{"from": "page", "token": "{token}"}}'
    amqp_body = {"from": "amqp", "token": token}
    problems: list[str] = []

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            timeout=BROWSER_TIMEOUT_MS,
        )
        try:
            context.set_default_timeout(BROWSER_TIMEOUT_MS)
            expect.set_options(timeout=BROWSER_TIMEOUT_MS)
            page = context.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda message: (
                    problems.append(f"console {message.type}: {message.text}")
                    if message.type == "error"
                    else None
                ),
            )
            page.on(
                "response",
                lambda response: (
                    problems.append(f"{response.status} for {response.url}")
                    if response.status >= 400
                    else None
                ),
            )
            answer = page.goto(running_gateway.url + "/")
            assert answer is not None and answer.status == 200

            page.fill("#address", address)
            page.click("#watch")
            expect(page.locator("#stream-status")).to_have_text(f"watching {address}")

            # Published from the page: the POST's answer shows, then the stream has it.
            page.select_option("#content-type", "application/json")
            page.fill("#body", page_body)
            page.click("#publish")
            expect(page.locator("#publish-result")).to_have_text("201 accepted")
            from_page = page.locator("#messages li", has_text='"from":"page"')
            expect(from_page).to_have_count(1)
            expect(from_page).to_contain_text(token)

            # Sent by an AMQP client to the embedded broker, same address.
            with concurrent.futures.ThreadPoolExecutor(1) as worker:
                outcome = worker.submit(
                    _send_with_amqp, address, running_gateway.amqp, amqp_body
                ).result(timeout=AMQP_TIMEOUT * 3)
            assert outcome == "accepted"
            from_amqp = page.locator("#messages li", has_text='"from":"amqp"')
            expect(from_amqp).to_have_count(1)
            expect(from_amqp).to_contain_text(token)

            # Newest first, each once, no error frame, still watching.
            texts = page.locator("#messages li").all_inner_texts()
            assert len(texts) == 2, texts
            assert '"from":"amqp"' in texts[0] and '"from":"page"' in texts[1], texts
            assert page.locator("#messages li.error").count() == 0
            expect(page.locator("#stream-status")).to_have_text(f"watching {address}")
        except BaseException:
            print(f"gateway log (last lines):\n{running_gateway.log_tail()}")
            raise
        finally:
            context.close()
    assert not problems, problems


#: Run in the page: take one message from a ?body=binary stream as a browser does, and
#: answer its frame and the SHA-256 of the bytes that followed it.
TAKE_BINARY_MESSAGE = """
async (url) => {
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  let frame = null;
  const parts = [];
  let received = 0;
  const body = await new Promise((resolve, reject) => {
    socket.onerror = () => reject(new Error("WebSocket error"));
    socket.onmessage = (event) => {
      if (frame === null) {
        frame = JSON.parse(event.data);
      } else {
        parts.push(new Uint8Array(event.data));
        received += event.data.byteLength;
      }
      if (frame !== null && received >= (frame.body_size || 0)) {
        resolve(new Blob(parts).arrayBuffer());
      }
    };
  });
  socket.close();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await body));
  const hex = Array.from(digest, (octet) => octet.toString(16).padStart(2, "0")).join("");
  return {frame, frames: parts.length, sha256: hex};
}
"""


def test_a_browser_takes_a_body_in_binary_frames(
    running_gateway: GatewayServer, tmp_path: Path
) -> None:
    sync_playwright = _playwright()
    address = f"console-binary/{uuid.uuid4().hex[:12]}"
    body = os.urandom(700_000)  # three binary frames
    answer = running_gateway.post(
        address, content=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert answer.status_code == 201, answer.text
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            timeout=BROWSER_TIMEOUT_MS,
        )
        try:
            context.set_default_timeout(BROWSER_TIMEOUT_MS)
            page = context.new_page()
            assert page.goto(running_gateway.url + "/") is not None
            url = f"{running_gateway.ws_url}/streams/{address}?body=binary"
            taken = page.evaluate(TAKE_BINARY_MESSAGE, url)
        finally:
            context.close()
    assert taken["frame"]["body_encoding"] == "binary", taken
    assert taken["frame"]["body_size"] == len(body)
    assert taken["frames"] == 3
    assert taken["sha256"] == hashlib.sha256(body).hexdigest()
