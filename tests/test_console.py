"""The web console (gateway/static/index.html, served at GET /) in a real headless
Chromium: a message published from the page shows up in the page's live stream, and so
does a message an AMQP client sends to the same address.

The browser is Debian's `chromium` (/usr/bin/chromium), driven by Playwright's Python
package with its own browser download never used (no `playwright install`). CI installs
both (.ci/run); when either is missing this test fails, it does not skip.

With authentication on, the console takes a key, keeps it in sessionStorage, and opens
its WebSocket with a ticket; EventSource streams with a ticket too. A page of another
site (another origin) can neither post to a gateway on loopback nor take or read its
messages.

The gateway runs for real: `python -m gateway` in a subprocess, with its embedded broker,
on free ports, stopped by its PID (tests/gateway_fixtures.py).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from gateway_fixtures import GatewayServer

from amqp_core import Delivery, Message, Timeout
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


def _browser(playwright: Any, folder: Path) -> Any:
    """Headless Chromium with a profile of its own in `folder`."""
    context = playwright.chromium.launch_persistent_context(
        str(folder / "chromium-profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS,
        timeout=BROWSER_TIMEOUT_MS,
    )
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    return context


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
        context = _browser(playwright, tmp_path)
        try:
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
        context = _browser(playwright, tmp_path)
        try:
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


# -- with authentication on ---------------------------------------------------------------


def _key_file(folder: Path, key: str) -> Path:
    """An API key file granting `key` the console-auth/ addresses (stored as its hash)."""
    entry = {"name": "console", "send": ["console-auth/*"], "receive": ["console-auth/*"]}
    path = folder / "keys.json"
    path.write_text(json.dumps({"sha256:" + hashlib.sha256(key.encode()).hexdigest(): entry}))
    return path


def test_the_console_works_with_authentication_on(tmp_path: Path) -> None:
    """Without a key the page says 401; with one (typed in, kept in sessionStorage only)
    it publishes and watches, its WebSocket opened with a ticket, never the key."""
    sync_playwright = _playwright()
    from playwright.sync_api import expect

    key = secrets.token_urlsafe(32)
    address = f"console-auth/{uuid.uuid4().hex[:12]}"
    sockets: list[str] = []
    with (
        GatewayServer(tmp_path, "--api-keys", str(_key_file(tmp_path, key))) as gateway,
        sync_playwright() as playwright,
    ):
        context = _browser(playwright, tmp_path)
        try:
            expect.set_options(timeout=BROWSER_TIMEOUT_MS)
            page = context.new_page()
            page.on("websocket", lambda socket: sockets.append(socket.url))
            assert page.goto(gateway.url + "/") is not None
            page.fill("#address", address)

            page.click("#publish")
            expect(page.locator("#publish-result")).to_contain_text("401 Unauthorized")
            page.click("#watch")
            expect(page.locator("#stream-status")).to_have_text("4401 Unauthorized")

            page.fill("#credential", key)
            page.locator("#credential").dispatch_event("change")
            page.click("#watch")
            expect(page.locator("#stream-status")).to_have_text(f"watching {address}")
            page.fill("#body", '{"from": "page"}')
            page.click("#publish")
            expect(page.locator("#publish-result")).to_have_text("201 accepted")
            expect(page.locator("#messages li", has_text='"from":"page"')).to_have_count(1)

            # An address outside the key's grant.
            page.fill("#address", "elsewhere")
            page.click("#publish")
            expect(page.locator("#publish-result")).to_contain_text("403 Forbidden")
            page.click("#watch")
            expect(page.locator("#stream-status")).to_have_text("4403 Forbidden")

            stored = page.evaluate(
                "() => [sessionStorage.getItem('amqp-gateway-credential'),"
                " localStorage.length, document.cookie]"
            )
            assert stored == [key, 0, ""], stored
            # A reload of the tab keeps it (sessionStorage), a new tab does not have it.
            page.reload()
            assert page.input_value("#credential") == key
            other = context.new_page()
            other.goto(gateway.url + "/")
            assert other.evaluate("() => sessionStorage.length") == 0
        except BaseException:
            print(f"gateway log (last lines):\n{gateway.log_tail()}")
            raise
        finally:
            context.close()
    assert len(sockets) == 3, sockets
    assert all(key not in url for url in sockets), sockets
    assert "ticket=" not in sockets[0] and all("ticket=" in url for url in sockets[1:]), sockets


#: Run in the page: ask for a ticket with the key in a header, then stream with
#: EventSource (which cannot send headers) and answer the first message's data; or, with
#: no key, answer how EventSource ended.
EVENT_SOURCE = """
async ([base, address, key]) => {
  let query = "";
  if (key) {
    const headers = {"X-API-Key": key};
    const answer = await fetch(base + "/auth/tickets", {method: "POST", headers});
    query = "?ticket=" + encodeURIComponent((await answer.json()).ticket);
  }
  const source = new EventSource(base + "/streams/" + encodeURIComponent(address) + query);
  return await new Promise((resolve) => {
    source.addEventListener("message", (event) => {
      source.close();
      resolve(JSON.parse(event.data));
    });
    source.onerror = () => { source.close(); resolve({failed: source.readyState}); };
  });
}
"""


def test_a_browser_event_source_streams_with_a_ticket(tmp_path: Path) -> None:
    sync_playwright = _playwright()
    key = secrets.token_urlsafe(32)
    address = f"console-auth/{uuid.uuid4().hex[:12]}"
    with (
        GatewayServer(tmp_path, "--api-keys", str(_key_file(tmp_path, key))) as gateway,
        sync_playwright() as playwright,
    ):
        answer = gateway.post(address, {"n": 1}, headers={"X-API-Key": key})
        assert answer.status_code == 201, answer.text
        context = _browser(playwright, tmp_path)
        try:
            page = context.new_page()
            assert page.goto(gateway.url + "/") is not None
            refused = page.evaluate(EVENT_SOURCE, [gateway.url, address, None])
            streamed = page.evaluate(EVENT_SOURCE, [gateway.url, address, key])
        finally:
            context.close()
    assert refused == {"failed": 2}, refused  # EventSource.CLOSED: the 401 ended it
    assert streamed["body"] == {"n": 1}, streamed


#: A page of another site: it POSTs text/plain to the gateway (a "simple" request,
#: sent without a preflight), takes by long-poll, and opens a WebSocket; it answers how
#: many frames the WebSocket brought.
ATTACK = """
async ([base, address]) => {
  const path = "/messages/" + encodeURIComponent(address);
  await fetch(base + path, {method: "POST", mode: "no-cors",
                            headers: {"Content-Type": "text/plain"}, body: "from evil"});
  await fetch(base + path + "?timeout=1", {mode: "no-cors"});
  const frames = await new Promise((resolve) => {
    let count = 0;
    const url = base.replace("http", "ws") + "/streams/" + encodeURIComponent(address);
    const socket = new WebSocket(url);
    socket.onmessage = () => { count += 1; };
    socket.onclose = () => resolve(count);
    setTimeout(() => { socket.close(); resolve(count); }, 3000);
  });
  return frames;
}
"""


def test_a_page_of_another_site_cannot_post_take_or_stream(
    running_gateway: GatewayServer, tmp_path: Path
) -> None:
    """The gateway runs without authentication on loopback (the default); a page served
    from another origin (another port) attacks it from a real browser: nothing it posts
    arrives, and it takes and reads nothing."""
    sync_playwright = _playwright()
    address = f"console-attack/{uuid.uuid4().hex[:12]}"
    answer = running_gateway.post(address, {"secret": 1})
    assert answer.status_code == 201, answer.text
    page_server = ThreadingHTTPServer(("127.0.0.1", 0), _EvilPage)
    thread = threading.Thread(target=page_server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as playwright:
            context = _browser(playwright, tmp_path)
            try:
                page = context.new_page()
                assert page.goto(f"http://127.0.0.1:{page_server.server_address[1]}/") is not None
                frames = page.evaluate(ATTACK, [running_gateway.url, address])
            finally:
                context.close()
    finally:
        page_server.shutdown()
        page_server.server_close()
        thread.join(timeout=10)
    assert frames == 0
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        left = worker.submit(_take_all, address, running_gateway.amqp).result(timeout=60)
    assert left == [{"secret": 1}], "the page posted or took something"
    refused = running_gateway.metrics().get('gateway_auth_refusals_total{reason="origin"}')
    assert refused == 3, refused


class _EvilPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _take_all(address: str, node: str) -> list[Any]:
    """Every message at `address`, taken with amqp_core's BlockingConnection (in a worker
    thread, as `_send_with_amqp`)."""
    connection = BlockingConnection(node, timeout=AMQP_TIMEOUT)
    try:
        receiver = connection.create_receiver(address, credit=10)
        bodies = []
        while True:
            try:
                bodies.append(receiver.receive(timeout=1).body)
            except Timeout:
                return bodies
            receiver.accept()
    finally:
        connection.close()
