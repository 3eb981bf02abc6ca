"""The sans-IO protocol engine, wired in memory to a second engine: ours or Proton's.

No sockets and no sleeping: `engine_harness.Wire` moves the bytes, records every frame
that crosses, and timers run on a `FakeClock`. What both engines can do is tested in
three pairings (ours with ours, ours as client with Proton as server, and the reverse),
so each cell is checked against the reference implementation too; what only a
misbehaving peer would send is written by hand with `RawPeer`.
"""

from __future__ import annotations

import gc
import itertools
import os
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from engine_harness import (
    FakeClock,
    OurPeer,
    Peer,
    ProtonPeer,
    RawPeer,
    Wire,
    answer_opens,
    connect,
    links_of,
    make_peer,
    names,
    open_link,
)

import amqp_core
from amqp_core import spec
from amqp_core.engine import Delivery, Link, Terminus, Transport
from amqp_core.framing import AMQP_HEADER, SASL_HEADER
from amqp_core.types import symbol

proton = pytest.importorskip("proton")

#: (client, server) engine kinds: each cell runs against Proton in both directions.
PAIRS = [("ours", "ours"), ("ours", "proton"), ("proton", "ours")]
PAIR_IDS = ["ours-ours", "ours-proton", "proton-ours"]
pairs = pytest.mark.parametrize(("client_kind", "server_kind"), PAIRS, ids=PAIR_IDS)

LOCAL_ACTIVE, LOCAL_CLOSED = 2, 4
REMOTE_ACTIVE, REMOTE_CLOSED = 16, 32
SERVER = Transport.SERVER

UNAUTHORIZED = "amqp:unauthorized-access"
FRAMING_ERROR = "amqp:connection:framing-error"
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"

OPEN = spec.Open(container_id="raw-peer")
BEGIN = spec.Begin(next_outgoing_id=0, incoming_window=1000, outgoing_window=1000)


# -- helpers ------------------------------------------------------------------------------


def tag_of(delivery: Any) -> bytes:
    """A delivery's tag as bytes (Proton's binding hands tags back as str)."""
    tag = delivery.tag
    return tag.encode() if isinstance(tag, str) else tag


def headers(records: list[Any]) -> list[bytes]:
    return [record.header for record in records if record.header is not None]


_tag_numbers = itertools.count()


def transfer(sender: Any, payload: bytes, tag: bytes | None = None) -> Any:
    """Send one message the way both engines' APIs allow: delivery, stream, advance
    (and settle first when the link sends pre-settled, as Proton's Message.send does)."""
    delivery = sender.delivery(tag if tag is not None else b"tag-%d" % next(_tag_numbers))
    sender.stream(payload)
    sender.advance()
    if sender.snd_settle_mode == Link.SND_SETTLED:
        delivery.settle()
    return delivery


def take_messages(receiver: Any) -> list[tuple[Any, bytes]]:
    """Read every complete delivery waiting on `receiver`: (delivery, payload) each."""
    taken = []
    while (delivery := receiver.current) is not None and not delivery.partial:
        payload = receiver.recv(delivery.pending) or b""
        receiver.advance()
        taken.append((delivery, payload))
    return taken


def our_client_and_raw_server(**settings: Any) -> tuple[OurPeer, RawPeer, Wire]:
    client = OurPeer(**settings)
    raw = RawPeer()
    wire = Wire(client, raw)
    client.connection.open()
    wire.pump()
    return client, raw, wire


def raw_client_and_our_server(**settings: Any) -> tuple[RawPeer, OurPeer, Wire]:
    raw = RawPeer().header(AMQP_HEADER).frame(OPEN)
    server = OurPeer(SERVER, **settings)
    wire = Wire(raw, server)
    wire.pump()
    answer_opens(server)
    wire.pump()
    return raw, server, wire


def close_condition(records: list[Any]) -> str | None:
    closes = [record.body for record in records if isinstance(record.body, spec.Close)]
    assert closes, "no close frame was sent"
    return str(closes[-1].error.condition) if closes[-1].error is not None else None


# -- protocol headers and SASL ------------------------------------------------------------


@pytest.mark.parametrize("server_sasl", [False, True], ids=["server-plain", "server-sasl"])
@pytest.mark.parametrize("client_sasl", [False, True], ids=["client-plain", "client-sasl"])
def test_the_server_follows_the_header_the_client_chose(client_sasl, server_sasl):
    client = OurPeer(sasl=client_sasl)
    server = OurPeer(SERVER, sasl=server_sasl)
    wire = connect(client, server)
    expected = [SASL_HEADER, AMQP_HEADER] if client_sasl else [AMQP_HEADER]
    assert headers(wire.sent_by_client) == expected
    assert headers(wire.sent_by_server) == expected
    assert client.connection.state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert server.connection.state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert server.transport.authenticated is client_sasl


@pytest.mark.parametrize("client_sasl", [False, True], ids=["client-plain", "client-sasl"])
@pytest.mark.parametrize(("client_kind", "server_kind"), PAIRS[1:], ids=PAIR_IDS[1:])
def test_header_detection_interoperates_with_proton(client_kind, server_kind, client_sasl):
    settings = {"sasl": True} if client_kind == "ours" else {"sasl_mechs": "ANONYMOUS"}
    client = make_peer(client_kind, "client", **(settings if client_sasl else {}))
    server = make_peer(server_kind, "server")
    wire = connect(client, server)
    assert headers(wire.sent_by_client)[0] == (SASL_HEADER if client_sasl else AMQP_HEADER)
    assert client.connection.state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert server.connection.remote_container == client.connection.container


def test_sasl_anonymous_logs_in_as_anonymous():
    client = OurPeer(sasl=True)
    server = OurPeer(SERVER)
    wire = connect(client, server)
    init = wire.bodies("client", spec.SaslInit)
    assert [str(frame.mechanism) for frame in init] == ["ANONYMOUS"]
    assert server.transport.authenticated
    assert server.transport.user == "anonymous"
    assert client.transport.authenticated


def plain_client(kind: str, user: str, password: str) -> Peer:
    """A client that logs in with PLAIN (user and password are read at bind time)."""
    if kind == "ours":
        client: Peer = OurPeer(sasl=True, bind=False)
    else:
        client = ProtonPeer("client", sasl_mechs="PLAIN", bind=False)
    client.connection.user = user
    client.connection.password = password
    client.bind()  # type: ignore[attr-defined]
    return client


def server_checking(passwords: dict[str, str], seen: list[tuple[str, str]]) -> OurPeer:
    server = OurPeer(SERVER)

    def authenticator(user: str, password: str) -> bool:
        seen.append((user, password))
        return passwords.get(user) == password

    server.transport.sasl().authenticator = authenticator
    return server


@pytest.mark.parametrize("client_kind", ["ours", "proton"])
def test_sasl_plain_lets_in_whom_the_authenticator_accepts(client_kind):
    seen: list[tuple[str, str]] = []
    client = plain_client(client_kind, "alice", "secret")
    server = server_checking({"alice": "secret"}, seen)
    wire = connect(client, server)
    assert seen == [("alice", "secret")]
    assert [str(init.mechanism) for init in wire.bodies("client", spec.SaslInit)] == ["PLAIN"]
    assert server.transport.authenticated
    assert server.transport.user == "alice"
    assert client.connection.state == LOCAL_ACTIVE | REMOTE_ACTIVE


@pytest.mark.parametrize("client_kind", ["ours", "proton"])
def test_sasl_plain_with_a_wrong_password_is_unauthorized_access(client_kind):
    seen: list[tuple[str, str]] = []
    client = plain_client(client_kind, "alice", "guess")
    server = server_checking({"alice": "secret"}, seen)
    wire = connect(client, server)
    assert seen == [("alice", "guess")]
    outcome = wire.bodies("server", spec.SaslOutcome)
    assert [int(frame.code) for frame in outcome] == [1]  # auth: bad credentials
    assert server.transport.condition.name == UNAUTHORIZED
    assert client.transport.condition.name == UNAUTHORIZED
    assert not server.transport.authenticated
    assert not wire.frames("client", spec.Open), "the client opened after failing SASL"
    assert server.transport.closed and client.transport.closed


def test_sasl_plain_without_an_authenticator_lets_nobody_in():
    client = plain_client("ours", "alice", "secret")
    server = OurPeer(SERVER)
    server.transport.sasl()
    connect(client, server)
    assert client.transport.condition.name == UNAUTHORIZED
    assert server.transport.user is None


def test_sasl_plain_against_protons_builtin_sasl_fails_clearly():
    """Proton without Cyrus cannot check PLAIN: our client, allowed only PLAIN, must
    stop with unauthorized-access instead of hanging or logging in some other way."""
    if proton.SASL.extended():
        pytest.skip("this Proton has Cyrus SASL, which may offer PLAIN")
    client = OurPeer(sasl=True, bind=False)
    client.transport.sasl().allowed_mechs("PLAIN")
    client.connection.user, client.connection.password = "alice", "secret"
    client.bind()
    server = ProtonPeer("server", sasl_mechs="PLAIN ANONYMOUS")
    wire = connect(client, server)
    assert not wire.bodies("client", spec.SaslInit)
    assert client.transport.condition.name == UNAUTHORIZED
    assert client.connection.state & REMOTE_ACTIVE == 0


@pytest.mark.parametrize(
    ("allowed", "credentials", "chosen"),
    [
        (None, False, "ANONYMOUS"),
        (None, True, "PLAIN"),
        ("EXTERNAL", False, "EXTERNAL"),
        ("EXTERNAL", True, "EXTERNAL"),
        ("PLAIN ANONYMOUS", True, "PLAIN"),
    ],
)
def test_the_client_picks_external_only_when_allowed_mechs_asks(allowed, credentials, chosen):
    client = OurPeer(sasl=True, bind=False)
    if allowed:
        client.transport.sasl().allowed_mechs(allowed)
    if credentials:
        client.connection.user, client.connection.password = "alice", "secret"
    client.bind()
    raw = RawPeer()
    wire = Wire(client, raw)
    client.connection.open()
    offer = [symbol("EXTERNAL"), symbol("PLAIN"), symbol("ANONYMOUS")]
    raw.header(SASL_HEADER).sasl_frame(spec.SaslMechanisms(sasl_server_mechanisms=offer))
    wire.pump()
    (init,) = raw.performatives(spec.SaslInit)
    assert str(init.mechanism) == chosen
    raw.sasl_frame(spec.SaslOutcome(code=0))
    wire.pump()
    assert headers(raw.frames) == [SASL_HEADER, AMQP_HEADER]
    assert raw.performatives(spec.Open)
    assert client.transport.authenticated


def test_a_server_that_requires_sasl_refuses_a_client_that_skips_it():
    client = OurPeer()
    server = OurPeer(SERVER)
    server.transport.require_auth(True)
    wire = connect(client, server)
    assert server.transport.condition.name == UNAUTHORIZED
    assert not wire.frames("server", spec.Open)
    assert client.connection.state & REMOTE_ACTIVE == 0


WRONG_HEADERS = {
    "pre-standard": b"AMQP\x01\x01\x00\x00",
    "tls-not-offered": b"AMQP\x02\x01\x00\x00",
    "amqp-1.0.1": b"AMQP\x00\x01\x00\x01",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "zeros": bytes(8),
}


@pytest.mark.parametrize("header", WRONG_HEADERS.values(), ids=WRONG_HEADERS.keys())
@pytest.mark.parametrize("server_sasl", [False, True], ids=["server-plain", "server-sasl"])
def test_a_wrong_protocol_header_is_answered_with_ours_then_the_connection_closes(
    header, server_sasl
):
    raw = RawPeer().raw(header)
    server = OurPeer(SERVER, sasl=server_sasl)
    Wire(raw, server).pump()
    ours = SASL_HEADER if server_sasl else AMQP_HEADER
    assert headers(raw.frames) == [ours]
    assert not raw.performatives()
    assert raw.eof, "the server did not close its end"
    assert server.transport.closed
    assert server.transport.condition.name == FRAMING_ERROR
    assert "TRANSPORT_CLOSED" in names(server.events())


@pytest.mark.parametrize(
    ("client_sasl", "answer"),
    [(False, b"AMQP\x01\x01\x00\x00"), (False, SASL_HEADER), (True, AMQP_HEADER)],
    ids=["plain-gets-pre-standard", "plain-gets-sasl", "sasl-gets-plain"],
)
def test_a_client_answered_with_another_header_closes_without_a_second_header(client_sasl, answer):
    """Spec 2.2: the *server* answers an unsupported header with its own. A client has
    already sent its header and only closes; Proton's client does exactly that."""
    client, raw, wire = our_client_and_raw_server(sasl=client_sasl)
    sent = headers(raw.frames)
    raw.raw(answer)
    wire.pump()
    assert client.transport.condition.name == FRAMING_ERROR
    assert raw.eof
    assert headers(raw.frames) == sent, "the client sent a protocol header twice"


# -- open, begin, attach, detach, end, close -----------------------------------------------


@pairs
def test_open_carries_identity_properties_and_capabilities(client_kind, server_kind):
    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server")
    client.connection.hostname = "vhost.example"
    client.connection.properties = {client.lib.symbol("product"): "test", client.lib.symbol("n"): 3}
    client.connection.desired_capabilities = [client.lib.symbol("ANONYMOUS-RELAY")]
    server.connection.offered_capabilities = [
        server.lib.symbol("ANONYMOUS-RELAY"),
        server.lib.symbol("DELAYED_DELIVERY"),
    ]
    server.connection.properties = {server.lib.symbol("product"): "server"}
    connect(client, server)
    assert server.connection.remote_container == client.connection.container
    assert client.connection.remote_container == server.connection.container
    assert server.connection.remote_hostname == "vhost.example"
    assert server.connection.remote_properties == {symbol("product"): "test", symbol("n"): 3}
    assert client.connection.remote_properties == {symbol("product"): "server"}
    assert [str(c) for c in server.connection.remote_desired_capabilities] == ["ANONYMOUS-RELAY"]
    assert [str(c) for c in client.connection.remote_offered_capabilities] == [
        "ANONYMOUS-RELAY",
        "DELAYED_DELIVERY",
    ]


@pairs
def test_peer_errors_arrive_as_remote_conditions_at_every_level(client_kind, server_kind):
    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server")
    wire = connect(client, server)
    session = client.connection.session()
    session.open()
    detached, _ = open_link(wire, "sender", "detached", session=session)
    closed, _ = open_link(wire, "receiver", "closed", session=session)
    served = {link.name: link for link in links_of(server.connection)}
    lib = server.lib

    served["detached"].condition = lib.Condition("amqp:link:detach-forced", "moved", None)
    served["detached"].detach()
    wire.pump()
    assert names(client.events()) == ["LINK_REMOTE_DETACH"]
    if server_kind == "ours":  # Proton's detach (closed=false) leaves its error out
        assert detached.remote_condition.name == "amqp:link:detach-forced"
        assert detached.remote_condition.description == "moved"

    served["closed"].condition = lib.Condition("amqp:not-found", "no such node", None)
    served["closed"].close()
    wire.pump()
    assert names(client.events()) == ["LINK_REMOTE_CLOSE"]
    assert closed.remote_condition.name == "amqp:not-found"

    detach_frames = wire.bodies("server", spec.Detach)
    assert [bool(frame.closed) for frame in detach_frames] == [False, True]

    served_session = served["closed"].session
    served_session.condition = lib.Condition("amqp:session:errant-link", "bad link", None)
    served_session.close()
    wire.pump()
    assert names(client.events()) == ["SESSION_REMOTE_CLOSE"]
    assert session.remote_condition.name == "amqp:session:errant-link"
    assert session.remote_condition.description == "bad link"

    server.connection.condition = lib.Condition(
        "amqp:connection:forced", "shutting down", {lib.symbol("retry-after"): 5}
    )
    server.connection.close()
    wire.pump()
    assert "CONNECTION_REMOTE_CLOSE" in names(client.events())
    condition = client.connection.remote_condition
    assert (condition.name, condition.description) == ("amqp:connection:forced", "shutting down")
    assert condition.info == {symbol("retry-after"): 5}
    client.connection.close()
    wire.pump()
    assert client.transport.closed and server.transport.closed


@pairs
def test_a_clean_close_ends_everything_in_order(client_kind, server_kind):
    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server")
    wire = connect(client, server)
    sender, _ = open_link(wire, "sender", "out")
    server.events()
    sender.close()
    sender.session.close()
    client.connection.close()
    wire.pump()
    seen = names(server.events())
    closes = [name for name in seen if name.endswith("REMOTE_CLOSE")]
    assert closes == ["LINK_REMOTE_CLOSE", "SESSION_REMOTE_CLOSE", "CONNECTION_REMOTE_CLOSE"]
    assert server.connection.remote_condition is None
    answer_closes(server)
    wire.pump()
    assert client.connection.state == LOCAL_CLOSED | REMOTE_CLOSED
    assert client.transport.closed and server.transport.closed


def answer_closes(peer: Peer) -> None:
    links = links_of(peer.connection)
    sessions = list({id(link.session): link.session for link in links}.values())
    for endpoint in [*links, *sessions, peer.connection]:
        if endpoint.state & REMOTE_CLOSED:
            endpoint.close()


# -- negotiated limits --------------------------------------------------------------------


def test_open_announces_our_limits_and_proton_reads_them():
    client = OurPeer(max_frame_size=4096, channel_max=7, idle_timeout=30.0)
    server = ProtonPeer("server")
    wire = connect(client, server)
    (open_frame,) = wire.bodies("client", spec.Open)
    assert (open_frame.max_frame_size, open_frame.channel_max) == (4096, 7)
    assert open_frame.idle_time_out == 30_000
    assert server.transport.remote_max_frame_size == 4096
    assert server.transport.remote_channel_max == 7
    assert server.transport.remote_idle_timeout == 30.0
    assert client.transport.remote_max_frame_size == server.transport.max_frame_size


@pytest.mark.parametrize("receiver_kind", ["ours", "proton"])
@pytest.mark.parametrize("we_are", ["client", "server"])
def test_we_never_send_a_frame_larger_than_the_peers_max_frame_size(we_are, receiver_kind):
    limit = 512
    if we_are == "client":
        ours: Peer = OurPeer()
        peer = make_peer(receiver_kind, "server", max_frame_size=limit)
        wire = connect(ours, peer)
        sender, receiver = open_link(wire, "sender", "big")
    else:
        peer = make_peer(receiver_kind, "client", max_frame_size=limit)
        ours = OurPeer(SERVER)
        wire = connect(peer, ours)
        receiver, sender = open_link(wire, "receiver", "big")
    receiver.flow(20)
    wire.pump()
    payloads = [bytes(range(256)) * 40] + [b"small-%d" % i for i in range(10)]
    for payload in payloads:
        transfer(sender, payload)
    wire.pump()
    ours_sent = wire.frames(we_are)
    assert max(record.size for record in ours_sent) <= limit
    assert len(wire.frames(we_are, spec.Transfer)) > len(payloads)
    assert [payload for _, payload in take_messages(receiver)] == payloads


def test_a_frame_larger_than_our_max_frame_size_is_a_framing_error():
    raw, server, wire = raw_client_and_our_server(max_frame_size=512)
    raw.frame(BEGIN).frame(spec.Attach(name="x" * 600, handle=0, role=False))
    wire.pump()
    assert close_condition(raw.frames) == FRAMING_ERROR
    assert raw.eof


@pytest.mark.parametrize("peer_kind", ["ours", "proton"])
def test_sessions_beyond_the_peers_channel_max_are_not_begun(peer_kind):
    """The peer allows channel 0 only: a second session must wait (Proton logs and
    waits), not raise out of `output()` nor use a channel the peer cannot handle."""
    client = OurPeer()
    server = make_peer(peer_kind, "server", channel_max=0)
    wire = connect(client, server)
    first = client.connection.session()
    first.open()
    wire.pump()
    answer_opens(server)
    second = client.connection.session()
    second.open()
    wire.pump()
    begins = wire.frames("client", spec.Begin)
    assert [record.channel for record in begins] == [0]
    assert server.transport.condition is None
    assert client.transport.condition is None
    assert second.state & REMOTE_ACTIVE == 0


@pytest.mark.parametrize("peer_kind", ["ours", "proton"])
def test_sessions_waiting_for_a_channel_go_in_turn_and_cost_nothing_meanwhile(
    peer_kind, monkeypatch
):
    """A thousand sessions wait for the one channel the peer allows besides the first.
    While they wait, an output pass looks only at the sessions that have work (not at
    every waiting one); each channel given back lets the next one begin; those given up
    before they were begun vanish without a frame."""
    client = OurPeer()
    server = make_peer(peer_kind, "server", channel_max=1)
    wire = connect(client, server)
    stream, _ = open_link(wire, "receiver", "stream")
    server.events()
    waiting = [client.connection.session() for _ in range(1000)]
    for session in waiting:
        session.open()
    wire.pump()
    answer_opens(server)
    wire.pump()
    assert waiting[0].state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert all(session.channel is None for session in waiting[1:])

    looked_at = []
    process_session = Transport._process_session

    def counted(transport, session):
        if transport is client.transport:
            looked_at.append(session)
        process_session(transport, session)

    monkeypatch.setattr(Transport, "_process_session", counted)
    for _ in range(100):
        stream.flow(1)
        wire.pump()
    assert len(looked_at) == 100, f"{len(looked_at)} sessions looked at in 100 passes"

    for session in waiting[2:]:
        session.close()  # given up: they never got a channel
    waiting[0].close()  # its channel goes to the next in line
    wire.pump()
    answer_late(server, wire)
    assert waiting[1].state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert waiting[1].channel == 1
    begun = {record.channel for record in wire.frames("client", spec.Begin)}
    assert len(wire.frames("client", spec.Begin)) == 3 and begun == {0, 1}
    assert client.connection.sessions() == [stream.session, waiting[1]]
    assert client.transport.condition is None and server.transport.condition is None


def test_a_begin_on_a_channel_over_our_channel_max_is_a_framing_error():
    """Spec 2.7.1 (open, channel-max): a channel outside the negotiated range closes
    the connection with framing-error; Proton's engine answers the same."""
    raw, server, wire = raw_client_and_our_server(channel_max=3)
    raw.frame(BEGIN, channel=4)
    wire.pump()
    assert close_condition(raw.frames) == FRAMING_ERROR


def test_links_beyond_the_peers_handle_max_are_not_attached():
    """The peer's begin says handle-max 0: one link at a time on that session (Proton
    logs "unable to find an open available handle" and waits)."""
    client, raw, wire = our_client_and_raw_server()
    session = client.connection.session()
    session.open()
    wire.pump()
    raw.header(AMQP_HEADER).frame(OPEN)
    raw.frame(
        spec.Begin(
            remote_channel=0,
            next_outgoing_id=0,
            incoming_window=10,
            outgoing_window=10,
            handle_max=0,
        )
    )
    wire.pump()
    for name in ("first", "second"):
        link = session.sender(name)
        link.target.address = name
        link.open()
    wire.pump()
    attaches = raw.performatives(spec.Attach)
    assert [(attach.name, int(attach.handle)) for attach in attaches] == [("first", 0)]
    session.links()[0].close()  # its handle goes to the one waiting
    wire.pump()
    attaches = raw.performatives(spec.Attach)
    assert [(attach.name, int(attach.handle)) for attach in attaches[1:]] == [("second", 0)]


def test_an_attach_over_our_handle_max_is_a_framing_error():
    """Spec 2.7.2 (begin, handle-max): a handle outside the range closes the connection
    with framing-error."""
    raw, server, wire = raw_client_and_our_server(handle_max=3)
    raw.frame(BEGIN).frame(spec.Attach(name="x", handle=4, role=False, initial_delivery_count=0))
    wire.pump()
    assert close_condition(raw.frames) == FRAMING_ERROR


# -- idle timeout and heartbeats ------------------------------------------------------------


@pytest.mark.parametrize("peer_kind", ["ours", "proton"])
def test_heartbeats_go_out_at_half_the_peers_idle_timeout(peer_kind):
    clock = FakeClock()
    client = make_peer(peer_kind, "client", idle_timeout=10.0)
    server = OurPeer(SERVER)
    wire = connect(client, server)
    # Proton announces half of its own timeout, so that it hears from us in time.
    announced = 10.0 if peer_kind == "ours" else 5.0
    assert server.transport.remote_idle_timeout == announced
    half = announced / 2
    server.tick(clock.now)
    wire.pump()
    wire.forget()
    clock.advance(half - 0.1)
    server.tick(clock.now)
    wire.pump()
    assert not wire.frames("server"), "a heartbeat went out before half the timeout"
    clock.advance(0.1)
    server.tick(clock.now)
    wire.pump()
    assert [record.name for record in wire.frames("server")] == ["empty"]
    for _ in range(4):
        clock.advance(half)
        server.tick(clock.now)
        wire.pump()
    assert [record.name for record in wire.frames("server")] == ["empty"] * 5


@pairs
def test_a_quiet_connection_stays_up_on_heartbeats(client_kind, server_kind):
    """Both ends announce 10 s and say nothing else for a minute: heartbeats alone
    keep the connection up, whichever engine sends them."""
    clock = FakeClock()
    client = make_peer(client_kind, "client", idle_timeout=10.0)
    server = make_peer(server_kind, "server", idle_timeout=10.0)
    wire = connect(client, server)
    for _ in range(60):
        clock.advance(1.0)
        wire.tick(clock.now)
    assert client.transport.condition is None
    assert server.transport.condition is None
    assert client.connection.state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert len(wire.frames("server")) - 1 >= 10  # the open, then heartbeats
    assert len(wire.frames("client")) - 1 >= 10


def test_a_silent_peer_is_declared_dead_after_our_idle_timeout():
    clock = FakeClock()
    client, raw, wire = our_client_and_raw_server(idle_timeout=10.0)
    raw.header(AMQP_HEADER).frame(OPEN)
    wire.pump()
    assert client.tick(clock.now) == clock.now + 10.0
    clock.advance(9.9)
    client.tick(clock.now)
    wire.pump()
    assert not raw.performatives(spec.Close)
    raw.heartbeat()  # input restarts the clock
    wire.pump()
    client.tick(clock.now)
    clock.advance(9.9)
    client.tick(clock.now)
    wire.pump()
    assert not raw.performatives(spec.Close)
    clock.advance(0.1)
    client.tick(clock.now)
    wire.pump()
    assert close_condition(raw.frames) == RESOURCE_LIMIT
    assert client.transport.condition.name == RESOURCE_LIMIT
    assert "TRANSPORT_ERROR" in names(client.events())


def test_tick_returns_the_earliest_deadline():
    clock = FakeClock()
    client = OurPeer(idle_timeout=10.0)
    server = OurPeer(SERVER, idle_timeout=4.0)
    connect(client, server)
    # The client must hear something every 10 s and send something every 2 s.
    assert client.tick(clock.now) == pytest.approx(clock.now + 2.0)
    assert server.tick(clock.now) == pytest.approx(clock.now + 4.0)


# -- flow control -------------------------------------------------------------------------


def sender_and_receiver(
    client_kind: str, server_kind: str, configure: Callable[[Any], None] | None = None
) -> tuple[Peer, Peer, Wire, Any, Any]:
    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server")
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "flow", configure=configure)
    server.events()
    return client, server, wire, sender, receiver


@pairs
def test_credit_lets_through_exactly_that_many_messages(client_kind, server_kind):
    client, server, wire, sender, receiver = sender_and_receiver(client_kind, server_kind)
    receiver.flow(3)
    wire.pump()
    assert "LINK_FLOW" in names(client.events())
    assert sender.credit == 3
    for index in range(5):
        transfer(sender, b"m%d" % index)
    wire.pump()
    assert [payload for _, payload in take_messages(receiver)] == [b"m0", b"m1", b"m2"]
    assert sender.queued == 2
    receiver.flow(2)
    wire.pump()
    assert [payload for _, payload in take_messages(receiver)] == [b"m3", b"m4"]
    assert sender.queued == 0


def observe_flow(client_kind: str, server_kind: str) -> list[dict[str, Any]]:
    """A script of credit, sends and drains; what each API shows after every step."""
    _, _, wire, sender, receiver = sender_and_receiver(client_kind, server_kind)
    seen: list[dict[str, Any]] = []

    def look(step: str) -> None:
        seen.append(
            {
                "step": step,
                "sender.credit": sender.credit,
                "sender.queued": sender.queued,
                "receiver.credit": receiver.credit,
                "receiver.queued": receiver.queued,
                "receiver.draining": receiver.draining(),
            }
        )

    look("attached")
    receiver.flow(5)
    look("flow 5")
    wire.pump()
    look("credit arrived")
    for index in range(3):
        transfer(sender, b"a%d" % index)
    look("3 sent")
    wire.pump()
    look("3 arrived")
    receiver.drain(0)
    wire.pump()
    look("drain asked")
    seen.append({"step": "sender.drained()", "drained": sender.drained()})
    wire.pump()
    look("drained")
    seen.append({"step": "receiver.drained()", "drained": receiver.drained()})
    take_messages(receiver)
    look("3 read")
    receiver.flow(2)
    wire.pump()
    for index in range(3):
        transfer(sender, b"b%d" % index)
    look("3 sent on 2 credit")
    wire.pump()
    look("2 arrived")
    return seen


@pytest.fixture(scope="module")
def flow_observations() -> dict[str, list[dict[str, Any]]]:
    return {"ours": observe_flow("ours", "ours"), "proton": observe_flow("proton", "proton")}


@pytest.mark.parametrize(
    "attribute",
    [
        "sender.credit",
        "sender.queued",
        "receiver.queued",
        "receiver.credit",
        "receiver.draining",
        "drained",
    ],
)
def test_credit_and_queue_counters_read_as_protons_do(flow_observations, attribute):
    def column(kind: str) -> list[tuple[str, Any]]:
        return [
            (row["step"], row[attribute]) for row in flow_observations[kind] if attribute in row
        ]

    assert column("ours") == column("proton")


@pairs
def test_drain_uses_or_returns_all_credit(client_kind, server_kind):
    client, server, wire, sender, receiver = sender_and_receiver(client_kind, server_kind)
    for index in range(3):
        transfer(sender, b"d%d" % index)
    receiver.drain(10)
    wire.pump()
    assert sender.drain_mode
    assert sender.queued == 0
    assert sender.credit == 7
    assert sender.drained() == 7
    assert sender.credit == 0
    wire.pump()
    flows = [record.body for record in wire.frames("client", spec.Flow)]
    assert flows and flows[-1].link_credit == 0 and flows[-1].delivery_count == 10
    assert len(take_messages(receiver)) == 3
    assert receiver.credit == 0
    assert not receiver.draining()
    assert receiver.drained() == 7
    assert receiver.drained() == 0


def test_a_flow_with_echo_is_answered_with_our_link_state():
    client, raw, wire = our_client_and_raw_server()
    session = client.connection.session()
    session.open()
    sender = session.sender("echoed")
    sender.target.address = "q"
    sender.open()
    raw.header(AMQP_HEADER).frame(OPEN)
    raw.frame(
        spec.Begin(remote_channel=0, next_outgoing_id=0, incoming_window=100, outgoing_window=100)
    )
    raw.frame(spec.Attach(name="echoed", handle=0, role=True))
    wire.pump()
    raw.frame(
        spec.Flow(
            next_incoming_id=0,
            incoming_window=100,
            next_outgoing_id=0,
            outgoing_window=100,
            handle=0,
            delivery_count=0,
            link_credit=5,
            echo=True,
        )
    )
    wire.pump()
    (answer,) = raw.performatives(spec.Flow)
    assert (answer.handle, answer.delivery_count, answer.link_credit) == (0, 0, 5)
    assert not answer.echo
    raw.frame(
        spec.Flow(
            next_incoming_id=0,
            incoming_window=100,
            next_outgoing_id=0,
            outgoing_window=100,
            echo=True,
        )
    )
    wire.pump()
    session_flow = raw.performatives(spec.Flow)[-1]
    assert session_flow.handle is None
    assert session_flow.next_outgoing_id == 0


def test_a_client_takes_transfers_beyond_its_credit_as_proton_does():
    """RabbitMQ 3.10 sends past credit topped up while its messages are on the way
    (rabbitmq-server#2597): a client keeps the messages and its link. (A server closes
    the connection instead: tests/test_bad_input.py.)"""
    client, raw, wire = our_client_and_raw_server()
    session = client.connection.session()
    session.open()
    receiver = session.receiver("overrun")
    receiver.source.address = "q"
    receiver.open()
    receiver.flow(1)
    raw.header(AMQP_HEADER).frame(OPEN)
    raw.frame(
        spec.Begin(remote_channel=0, next_outgoing_id=0, incoming_window=100, outgoing_window=100)
    )
    raw.frame(spec.Attach(name="overrun", handle=0, role=False, initial_delivery_count=0))
    for number in range(3):
        transfer = spec.Transfer(handle=0, delivery_id=number, delivery_tag=b"%d" % number)
        raw.frame(transfer, payload=b"message %d" % number)
    wire.pump()
    assert [payload for _, payload in take_messages(receiver)] == [
        b"message 0",
        b"message 1",
        b"message 2",
    ]
    assert receiver.credit == 0
    assert not raw.performatives(spec.Close)
    receiver.flow(2)  # the peer's count of deliveries is ours: new credit is 2, not -1 + 2
    wire.pump()
    flow = raw.performatives(spec.Flow)[-1]
    assert (flow.delivery_count, flow.link_credit) == (3, 2)


@pytest.mark.parametrize("receiver_kind", ["ours", "proton"])
def test_offered_sends_available_to_the_receiver(receiver_kind):
    """Proton's engine neither sends a flow for offered() nor shows a received
    available, so against Proton only the frame is checked."""
    client, server, wire, sender, receiver = sender_and_receiver("ours", receiver_kind)
    sender.offered(7)
    wire.pump()
    (flow,) = wire.bodies("client", spec.Flow)
    assert (flow.handle, flow.available) == (0, 7)
    if receiver_kind == "ours":
        assert "LINK_FLOW" in names(server.events())
        assert receiver.available == 7


def window_one_receiver() -> tuple[OurPeer, RawPeer, Wire, Any]:
    """Our sender facing a hand-written receiver: max-frame-size 512, incoming-window
    1, credit 10."""
    client, raw, wire = our_client_and_raw_server()
    session = client.connection.session()
    session.open()
    sender = session.sender("windowed")
    sender.target.address = "q"
    sender.open()
    raw.header(AMQP_HEADER).frame(spec.Open(container_id="raw-peer", max_frame_size=512))
    raw.frame(
        spec.Begin(remote_channel=0, next_outgoing_id=0, incoming_window=1, outgoing_window=100)
    )
    raw.frame(spec.Attach(name="windowed", handle=0, role=True))
    raw.frame(
        spec.Flow(
            next_incoming_id=0,
            incoming_window=1,
            next_outgoing_id=0,
            outgoing_window=100,
            handle=0,
            delivery_count=0,
            link_credit=10,
        )
    )
    wire.pump()
    return client, raw, wire, sender


def test_an_incoming_window_of_one_gets_one_transfer_at_a_time():
    client, raw, wire, sender = window_one_receiver()
    for index in range(3):
        transfer(sender, b"small-%d" % index)
    transfer(sender, b"L" * 1500)  # four frames of at most 512 bytes
    wire.pump()
    assert len(raw.performatives(spec.Transfer)) == 1
    for received in range(1, 7):
        raw.frame(
            spec.Flow(
                next_incoming_id=received,
                incoming_window=1,
                next_outgoing_id=0,
                outgoing_window=100,
            )
        )
        wire.pump()
        assert len(raw.performatives(spec.Transfer)) == received + 1
    assert max(record.size for record in raw.frames if record.header is None) <= 512
    transfers = raw.performatives(spec.Transfer)
    assert [bool(frame.more) for frame in transfers] == [False] * 3 + [True] * 3 + [False]
    assert client.transport.condition is None


def proton_receiver_with_window_one() -> tuple[OurPeer, ProtonPeer, Wire, Any, Any]:
    client = OurPeer()
    server = ProtonPeer("server", max_frame_size=512)
    wire = Wire(client, server)
    client.connection.open()
    session = client.connection.session()
    session.open()
    sender = session.sender("windowed")
    sender.target.address = "q"
    sender.open()
    wire.pump()
    receivers = []
    for event in server.events():
        if event.name == "CONNECTION_REMOTE_OPEN":
            event.context.open()
        elif event.name == "SESSION_REMOTE_OPEN":
            event.context.incoming_capacity = 512  # one frame: incoming-window 1
            event.context.open()
        elif event.name == "LINK_REMOTE_OPEN":
            event.context.target.copy(event.context.remote_target)
            event.context.open()
            event.context.flow(10)
            receivers.append(event.context)
    wire.pump()
    (begin,) = wire.bodies("server", spec.Begin)
    assert begin.incoming_window == 1
    return client, server, wire, sender, receivers[0]


def test_protons_session_capacity_is_honoured():
    client, server, wire, sender, receiver = proton_receiver_with_window_one()
    payload = bytes(range(256)) * 12
    transfer(sender, payload)
    wire.pump()
    received = b""
    for step in range(1, 20):
        assert len(wire.frames("client", spec.Transfer)) == step
        delivery = receiver.current
        received += receiver.recv(delivery.pending) or b""
        if not delivery.partial:
            break
        wire.pump()
    assert received == payload
    assert server.transport.condition is None


def test_an_abort_waits_for_the_session_window_like_any_transfer():
    """A transfer frame is a transfer frame, aborted or not (spec 2.5.6): sending it
    into a closed window is a window violation, which Proton punishes."""
    client, server, wire, sender, receiver = proton_receiver_with_window_one()
    delivery = transfer(sender, b"A" * 3000)
    wire.pump()
    assert len(wire.frames("client", spec.Transfer)) == 1
    delivery.abort()
    wire.pump()
    assert server.transport.condition is None
    receiver.recv(receiver.current.pending)
    wire.pump()
    assert server.transport.condition is None
    assert receiver.current.aborted
    last = wire.bodies("client", spec.Transfer)[-1]
    assert last.aborted


def test_every_transfer_frame_counts_in_next_outgoing_id_the_abort_too():
    client, raw, wire, sender = window_one_receiver()
    delivery = transfer(sender, b"A" * 2000)
    wire.pump()
    delivery.abort()
    raw.frame(
        spec.Flow(next_incoming_id=1, incoming_window=1, next_outgoing_id=0, outgoing_window=100)
    )
    wire.pump()
    transfers = raw.performatives(spec.Transfer)
    assert [bool(frame.aborted) for frame in transfers] == [False, True]
    raw.frame(
        spec.Flow(
            next_incoming_id=2,
            incoming_window=10,
            next_outgoing_id=0,
            outgoing_window=100,
            echo=True,
        )
    )
    wire.pump()
    assert raw.performatives(spec.Flow)[-1].next_outgoing_id == 2


# -- deliveries ---------------------------------------------------------------------------


@pairs
def test_delivery_tags_cross_intact(client_kind, server_kind):
    client, server, wire, sender, receiver = sender_and_receiver(client_kind, server_kind)
    receiver.flow(10)
    wire.pump()
    tags = [b"1", b"tag-1", b"x" * 32]
    if "proton" not in (client_kind, server_kind):  # Proton's binding reads tags as str
        tags += [b"\x00", b"\xff\x00\xfe", bytes(range(32))]
    for tag in tags:
        transfer(sender, b"payload", tag=tag)
    wire.pump()
    assert [tag_of(delivery) for delivery, _ in take_messages(receiver)] == tags


def test_generated_delivery_tags_are_unique():
    sender = OurPeer().connection.session().sender("tags")
    generated = {sender.delivery_tag() for _ in range(1000)}
    assert len(generated) == 1000


LARGE_SIZES = {"300KB": 300_000, "20MB": 20 * 1024 * 1024}


@pytest.mark.parametrize("size", LARGE_SIZES.values(), ids=LARGE_SIZES.keys())
@pairs
def test_a_message_larger_than_max_frame_size_is_split_and_rebuilt(client_kind, server_kind, size):
    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server", max_frame_size=64 * 1024)
    wire = connect(client, server, record=False)
    sender, receiver = open_link(wire, "sender", "large")
    receiver.flow(2)
    wire.pump()
    block = bytes(range(256)) * 4096
    payload = (block * (size // len(block) + 1))[:size]
    frames_needed = size // (64 * 1024) + 1
    wire.record = True
    transfer(sender, payload, tag=b"large")
    transfer(sender, b"after", tag=b"after")
    wire.pump()
    transfers = wire.frames("client", spec.Transfer)
    assert len(transfers) >= frames_needed + 1
    assert max(record.size for record in transfers) <= 64 * 1024
    assert [bool(record.body.more) for record in transfers[:-2]] == [True] * (len(transfers) - 2)
    assert transfers[0].body.delivery_tag == b"large"
    assert sum(len(record.payload) for record in transfers[:-1]) == size
    messages = take_messages(receiver)
    assert [(tag_of(delivery), len(body)) for delivery, body in messages] == [
        (b"large", size),
        (b"after", 5),
    ]
    assert messages[0][1] == payload


def test_the_receiver_sees_a_large_message_arrive_in_parts():
    client = OurPeer()
    server = OurPeer(SERVER, max_frame_size=1024)
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "parts")
    receiver.flow(1)
    wire.pump()
    server.events()
    transfer(sender, b"x" * 5000)
    data = client.transport.output()
    first_frame_size = int.from_bytes(data[:4], "big")
    server.transport.push(data[:first_frame_size])
    deliveries = [event.context for event in server.events() if event.name == "DELIVERY"]
    assert len(deliveries) == 1
    assert deliveries[0].partial
    assert receiver.current is deliveries[0]
    server.transport.push(data[first_frame_size:])
    assert not receiver.current.partial
    assert receiver.current.pending == 5000


# -- large messages: a bounded slice per output, no whole copies -------------------------

#: Well over one output's bound (`Transport.output_limit`, 1 MiB).
SLICED_SIZE = 5 * 1024 * 1024


@pytest.mark.parametrize("server_kind", ["ours", "proton"])
def test_a_large_message_leaves_a_bounded_slice_at_each_output(server_kind):
    """output() frames about `output_limit` bytes of a large message and says there is
    more (`more_output`): a driver writes it a slice at a time as the socket drains, the
    event loop's other work going on between, rather than framing it all in one call."""
    client = OurPeer()
    server = make_peer(server_kind, "server")
    wire = connect(client, server, record=False)
    sender, receiver = open_link(wire, "sender", "sliced")
    receiver.flow(1)
    wire.pump()
    payload = os.urandom(SLICED_SIZE)
    transfer(sender, payload)
    transport = client.transport
    bound = transport.output_limit + transport.max_frame_size
    sizes, more = [], []
    while data := transport.output():
        sizes.append(len(data))
        more.append(transport.more_output)
        server.give_input(data)
    assert max(sizes) <= bound
    assert len(sizes) >= SLICED_SIZE // bound
    assert more == [True] * (len(sizes) - 1) + [False]
    wire.pump()
    [(_, body)] = take_messages(receiver)
    assert body == payload


def test_a_peer_that_takes_frames_of_any_size_still_gets_a_large_message_in_slices():
    """rhea announces no max-frame-size (4 GiB): our transfers stay within our own."""
    client = OurPeer()
    server = OurPeer(SERVER, max_frame_size=2**32 - 1)
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "unbounded")
    receiver.flow(1)
    wire.pump()
    payload = os.urandom(SLICED_SIZE)
    transfer(sender, payload)
    wire.pump()
    transfers = wire.frames("client", spec.Transfer)
    assert max(record.size for record in transfers) <= client.transport.max_frame_size
    [(_, body)] = take_messages(receiver)
    assert body == payload


def test_other_links_messages_go_out_between_the_slices_of_a_large_message():
    client = OurPeer()
    server = OurPeer(SERVER)
    wire = connect(client, server)
    large_sender, large_receiver = open_link(wire, "sender", "large")
    small_sender, small_receiver = open_link(wire, "sender", "small")
    large_receiver.flow(1)
    small_receiver.flow(1)
    wire.pump()
    wire.forget()
    transfer(large_sender, os.urandom(SLICED_SIZE), tag=b"large")
    server.give_input(client.transport.output())  # its first slice, not recorded
    transfer(small_sender, b"small", tag=b"small")
    wire.pump()
    tags = [b"large"]
    for record in wire.frames("client", spec.Transfer):
        if record.body.delivery_tag is not None:
            tags.append(record.body.delivery_tag)
        elif tags[-1] != b"large, continued":
            tags.append(b"large, continued")
    assert tags.index(b"small") < len(tags) - 1, "the small message waited for the large one"
    assert take_messages(small_receiver)[0][1] == b"small"
    assert len(take_messages(large_receiver)[0][1]) == SLICED_SIZE


def test_closing_right_after_sending_a_large_message_waits_for_its_last_slice():
    """The detach, end and close that follow a large message leave after all its frames
    (each output() takes a slice), and Proton gets the message whole."""
    client = OurPeer()
    server = ProtonPeer("server")
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "then-close")
    receiver.flow(1)
    wire.pump()
    wire.forget()
    payload = os.urandom(SLICED_SIZE)
    transfer(sender, payload)
    sender.close()
    sender.session.close()
    client.connection.close()
    wire.pump()
    kinds = [type(record.body).__name__ for record in wire.frames("client")]
    assert kinds[-3:] == ["Detach", "End", "Close"], kinds[-5:]
    assert set(kinds[:-3]) == {"Transfer"}
    delivery = receiver.current
    assert not delivery.partial and receiver.recv(delivery.pending) == payload


def test_a_message_read_in_parts_as_its_frames_come_reads_in_order():
    client = OurPeer()
    server = OurPeer(SERVER, max_frame_size=1024)
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "parts-read")
    receiver.flow(1)
    wire.pump()
    payload = os.urandom(5000)
    transfer(sender, payload)
    data = client.transport.output()
    frame_sizes = []
    while len(data) > sum(frame_sizes):
        frame_sizes.append(int.from_bytes(data[sum(frame_sizes) : sum(frame_sizes) + 4], "big"))
    server.transport.push(data[: frame_sizes[0]])
    read = receiver.recv(100) or b""  # part of the first frame's payload
    server.transport.push(data[frame_sizes[0] : sum(frame_sizes[:3])])
    read += receiver.recv(2000) or b""
    server.transport.push(data[sum(frame_sizes[:3]) :])
    read += receiver.recv(receiver.current.pending) or b""
    assert read == payload


def test_sending_a_large_message_frames_it_without_copying_it_whole():
    """Sender.send keeps the body's own bytes (Message.encode_parts) and frames slices
    of them: what one send of 20 MB costs in memory is a slice's frames, not copies."""
    client = OurPeer()
    server = OurPeer(SERVER)
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "uncopied")
    receiver.flow(1)
    wire.pump()
    body = os.urandom(20 * 1024 * 1024)
    message = amqp_core.Message(body=body, inferred=True)
    tracemalloc.start()
    try:
        sender.send(message)
        while client.transport.output():
            pass  # what a driver writes to the socket, dropped
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(body) / 4, f"{peak / len(body):.2f} times the body"


def test_a_large_message_read_at_its_end_is_handed_over_without_a_copy():
    """The frames' payloads are gathered as they arrive, and recv() of the whole message
    hands that buffer over: one body's worth of memory, not two."""
    client = OurPeer()
    server = OurPeer(SERVER)
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "gathered")
    receiver.flow(1)
    wire.pump()
    payload = os.urandom(20 * 1024 * 1024)
    transfer(sender, payload)
    slices = []
    while data := client.transport.output():
        slices.append(data)
    tracemalloc.start()
    try:
        for data in slices:
            server.give_input(data)
        received = receiver.recv(receiver.current.pending)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == payload
    assert peak < 1.25 * len(payload), f"{peak / len(payload):.2f} times the message"


@pytest.mark.parametrize(
    ("client_kind", "server_kind"),
    [("proton", "ours"), ("ours", "ours"), ("ours", "proton")],
    ids=["proton-ours", "ours-ours", "ours-proton"],
)
def test_an_aborted_streamed_delivery_reaches_the_receiver_as_aborted(client_kind, server_kind):
    """As in Proton: what is streamed goes out before advance() (more=true), and
    abort() then tells the receiver to drop it."""
    client, server, wire, sender, receiver = sender_and_receiver(client_kind, server_kind)
    receiver.flow(5)
    wire.pump()
    delivery = sender.delivery(b"aborted")
    sender.stream(b"x" * 1000)
    wire.pump()
    assert receiver.current is not None and receiver.current.partial
    delivery.abort()
    wire.pump()
    incoming = receiver.current
    assert tag_of(incoming) == b"aborted"
    assert incoming.aborted
    assert not incoming.partial
    assert wire.bodies("client", spec.Transfer)[-1].aborted
    receiver.advance()
    incoming.settle()
    transfer(sender, b"next", tag=b"next")
    wire.pump()
    assert [(tag_of(d), body) for d, body in take_messages(receiver)] == [(b"next", b"next")]


def test_an_abort_arriving_from_proton_discards_the_partial_message():
    client, server, wire, sender, receiver = sender_and_receiver("proton", "ours")
    receiver.flow(5)
    wire.pump()
    delivery = sender.delivery(b"aborted")
    sender.stream(b"x" * 1000)
    wire.pump()
    delivery.abort()
    wire.pump()
    events = [event for event in server.events() if event.name == "DELIVERY"]
    assert events and events[-1].context.aborted
    incoming = receiver.current
    assert incoming.aborted and not incoming.partial
    assert incoming.pending == 0
    receiver.advance()
    assert receiver.credit == 4, "an aborted delivery uses its credit"


def test_aborting_a_delivery_that_never_left_sends_nothing():
    client, server, wire, sender, receiver = sender_and_receiver("ours", "ours")
    delivery = sender.delivery(b"never")
    sender.stream(b"x" * 100)
    sender.advance()
    delivery.abort()
    receiver.flow(5)
    wire.pump()
    assert not wire.frames("client", spec.Transfer)
    assert sender.queued == 0
    assert sender.credit == 5
    transfer(sender, b"kept", tag=b"kept")
    wire.pump()
    assert [(d.tag, body) for d, body in take_messages(receiver)] == [(b"kept", b"kept")]


@pytest.mark.parametrize("kind", ["ours", "proton"])
def test_sender_send_of_bytes_streams_into_the_current_delivery(kind):
    """Proton's Sender.send(bytes) is stream(bytes): engine-level code does
    delivery(tag); send(data); advance() and sends one message."""
    client, server, wire, sender, receiver = sender_and_receiver(kind, "ours")
    receiver.flow(5)
    wire.pump()
    sender.delivery(b"one")
    sender.send(b"part 1, ")
    sender.send(b"part 2")
    sender.advance()
    wire.pump()
    assert [(d.tag, body) for d, body in take_messages(receiver)] == [(b"one", b"part 1, part 2")]


@pytest.mark.parametrize("kind", ["ours", "proton"])
def test_settling_the_current_delivery_moves_the_receiver_on(kind):
    """Proton's settle() of the receiver's current delivery advances past it: its own
    IncomingMessageHandler (and ours) settles an aborted delivery without advance()."""
    client, server, wire, sender, receiver = sender_and_receiver(kind, kind)
    receiver.flow(5)
    wire.pump()
    transfer(sender, b"first", tag=b"first")
    transfer(sender, b"second", tag=b"second")
    wire.pump()
    first = receiver.current
    assert tag_of(first) == b"first"
    first.settle()
    assert receiver.current is not None and tag_of(receiver.current) == b"second"
    assert receiver.queued == 1


# -- settlement ----------------------------------------------------------------------------


def with_modes(
    snd_settle_mode: int, rcv_settle_mode: int = Link.RCV_FIRST
) -> Callable[[Any], None]:
    def configure(link: Any) -> None:
        link.snd_settle_mode = snd_settle_mode
        link.rcv_settle_mode = rcv_settle_mode

    return configure


@pairs
def test_a_settled_sender_sends_pre_settled_transfers(client_kind, server_kind):
    client, server, wire, sender, receiver = sender_and_receiver(
        client_kind, server_kind, with_modes(Link.SND_SETTLED)
    )
    assert receiver.remote_snd_settle_mode == Link.SND_SETTLED
    receiver.flow(10)
    wire.pump()
    for index in range(3):
        transfer(sender, b"s%d" % index)
    wire.pump()
    assert [bool(frame.settled) for frame in wire.bodies("client", spec.Transfer)] == [True] * 3
    messages = take_messages(receiver)
    assert [delivery.settled for delivery, _ in messages] == [True] * 3
    for delivery, _ in messages:
        delivery.settle()
    wire.pump()
    assert not wire.frames("server", spec.Disposition)


@pairs
def test_an_unsettled_sender_waits_for_the_receivers_outcome(client_kind, server_kind):
    client, server, wire, sender, receiver = sender_and_receiver(
        client_kind, server_kind, with_modes(Link.SND_UNSETTLED)
    )
    receiver.flow(10)
    wire.pump()
    sent = transfer(sender, b"u")
    wire.pump()
    assert not wire.bodies("client", spec.Transfer)[0].settled
    ((incoming, _),) = take_messages(receiver)
    assert not incoming.settled
    assert not sent.settled and sent.remote_state == 0
    incoming.update(Delivery.ACCEPTED)
    incoming.settle()
    wire.pump()
    assert sent.remote_state == Delivery.ACCEPTED
    assert sent.settled


@pairs
def test_a_mixed_sender_chooses_per_delivery(client_kind, server_kind):
    client, server, wire, sender, receiver = sender_and_receiver(
        client_kind, server_kind, with_modes(Link.SND_MIXED)
    )
    receiver.flow(10)
    wire.pump()
    presettled = sender.delivery(b"pre")
    sender.stream(b"1")
    presettled.settle()
    sender.advance()
    transfer(sender, b"2", tag=b"unsettled")
    wire.pump()
    settled_flags = [bool(frame.settled) for frame in wire.bodies("client", spec.Transfer)]
    assert settled_flags == [True, False]
    assert [(tag_of(d), d.settled) for d, _ in take_messages(receiver)] == [
        (b"pre", True),
        (b"unsettled", False),
    ]


@pairs
def test_receiver_settle_mode_second_settles_after_the_sender(client_kind, server_kind):
    def second(link: Any) -> None:
        link.rcv_settle_mode = Link.RCV_SECOND

    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server")
    wire = connect(client, server)
    session = client.connection.session()
    session.open()
    sender = session.sender("second")
    sender.target.address = "q"
    second(sender)
    sender.open()
    wire.pump()
    (receiver,) = answer_opens(server, configure=second)
    wire.pump()
    assert receiver.remote_rcv_settle_mode == Link.RCV_SECOND
    assert sender.remote_rcv_settle_mode == Link.RCV_SECOND
    receiver.flow(200)
    wire.pump()
    sent = [transfer(sender, b"%d" % index) for index in range(100)]
    wire.pump()
    incoming = [delivery for delivery, _ in take_messages(receiver)]
    for delivery in incoming:
        delivery.update(Delivery.ACCEPTED)
    wire.forget()
    wire.pump()
    (state_only,) = wire.bodies("server", spec.Disposition)
    assert (state_only.first, state_only.last, bool(state_only.settled)) == (0, 99, False)
    assert all(d.remote_state == Delivery.ACCEPTED and not d.settled for d in sent)
    for delivery in sent:
        delivery.settle()
    wire.pump()
    if client_kind == "ours":  # Proton's engine sends one disposition per delivery
        (sender_settles,) = wire.bodies("client", spec.Disposition)
        assert (sender_settles.first, sender_settles.last) == (0, 99)
        assert sender_settles.settled and not sender_settles.role
    assert all(delivery.settled for delivery in incoming)
    for delivery in incoming:
        delivery.settle()
    wire.pump()
    assert len(wire.frames("server", spec.Disposition)) == 1, "nothing left to tell"


def apply_outcome(delivery: Any, outcome: str, lib: Any) -> None:
    if outcome == "accepted":
        delivery.update(Delivery.ACCEPTED)
    elif outcome == "rejected":
        delivery.local.condition = lib.Condition(
            "amqp:invalid-field", "no such field", {lib.symbol("field"): "colour"}
        )
        delivery.update(Delivery.REJECTED)
    elif outcome == "released":
        delivery.update(Delivery.RELEASED)
    else:
        delivery.local.failed = True
        delivery.local.undeliverable = True
        delivery.local.annotations = {lib.symbol("x-opt-reason"): "busy"}
        delivery.update(Delivery.MODIFIED)
    delivery.settle()


OUTCOMES = ["accepted", "rejected", "released", "modified"]


@pytest.mark.parametrize("outcome", OUTCOMES)
@pairs
def test_each_outcome_reaches_the_sender_with_its_details(client_kind, server_kind, outcome):
    client, server, wire, sender, receiver = sender_and_receiver(client_kind, server_kind)
    receiver.flow(1)
    wire.pump()
    sent = transfer(sender, b"judge me")
    wire.pump()
    ((incoming, _),) = take_messages(receiver)
    apply_outcome(incoming, outcome, server.lib)
    wire.pump()
    assert any(event.name == "DELIVERY" for event in client.events())
    assert sent.settled and sent.updated
    remote = sent.remote
    if outcome == "accepted":
        assert sent.remote_state == Delivery.ACCEPTED
    elif outcome == "rejected":
        assert sent.remote_state == Delivery.REJECTED
        condition = remote.condition
        assert (condition.name, condition.description) == ("amqp:invalid-field", "no such field")
        assert condition.info == {symbol("field"): "colour"}
    elif outcome == "released":
        assert sent.remote_state == Delivery.RELEASED
    else:
        assert sent.remote_state == Delivery.MODIFIED
        assert remote.failed and remote.undeliverable
        assert remote.annotations == {symbol("x-opt-reason"): "busy"}


@pytest.mark.parametrize(
    ("client_kind", "server_kind"),
    [("ours", "ours"), ("proton", "ours")],
    ids=["ours-ours", "proton-ours"],
)
def test_settling_100_deliveries_at_once_sends_one_disposition(client_kind, server_kind):
    client, server, wire, sender, receiver = sender_and_receiver(client_kind, server_kind)
    receiver.flow(100)
    wire.pump()
    sent = [transfer(sender, b"%d" % index) for index in range(100)]
    wire.pump()
    for delivery, _ in take_messages(receiver):
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
    wire.forget()
    wire.pump()
    (disposition,) = wire.bodies("server", spec.Disposition)
    assert (disposition.first, disposition.last) == (0, 99)
    assert disposition.role and disposition.settled
    assert isinstance(disposition.state, spec.Accepted)
    assert all(d.settled and d.remote_state == Delivery.ACCEPTED for d in sent)


def test_dispositions_group_runs_of_the_same_outcome():
    client, server, wire, sender, receiver = sender_and_receiver("ours", "ours")
    receiver.flow(40)
    wire.pump()
    for index in range(40):
        transfer(sender, b"%d" % index)
    wire.pump()
    incoming = [delivery for delivery, _ in take_messages(receiver)]
    for index, delivery in enumerate(incoming):
        if index in (10, 11, 12):
            delivery.update(Delivery.RELEASED)
        elif index < 30:
            delivery.update(Delivery.ACCEPTED)
        else:
            continue  # 30-39 stay unsettled
        delivery.settle()
    incoming[35].update(Delivery.ACCEPTED)
    incoming[35].settle()
    wire.forget()
    wire.pump()
    ranges = [
        (int(d.first), int(d.last if d.last is not None else d.first), type(d.state).__name__)
        for d in wire.bodies("server", spec.Disposition)
    ]
    assert ranges == [
        (0, 9, "Accepted"),
        (10, 12, "Released"),
        (13, 29, "Accepted"),
        (35, 35, "Accepted"),
    ]


@pytest.mark.parametrize("kind", ["ours", "proton"])
def test_unsettled_counts_drop_as_deliveries_settle(kind):
    client, server, wire, sender, receiver = sender_and_receiver(kind, kind)
    receiver.flow(10)
    wire.pump()
    sent = [transfer(sender, b"%d" % index) for index in range(10)]
    wire.pump()
    incoming = [delivery for delivery, _ in take_messages(receiver)]
    assert (sender.unsettled, receiver.unsettled) == (10, 10)
    for delivery in incoming:
        delivery.update(Delivery.ACCEPTED)
    wire.pump()
    for delivery in sent:
        delivery.settle()
    wire.pump()
    assert sender.unsettled == 0
    for delivery in incoming:
        delivery.settle()
    wire.pump()
    assert receiver.unsettled == 0


def test_deliveries_settled_at_both_ends_are_forgotten():
    """A long-lived at-least-once link must not keep every delivery it ever sent."""
    client, server, wire, sender, receiver = sender_and_receiver("ours", "ours")
    receiver.flow(50)
    wire.pump()
    sent = [weakref.ref(transfer(sender, b"%d" % index)) for index in range(50)]
    wire.pump()
    incoming = [delivery for delivery, _ in take_messages(receiver)]
    for delivery in incoming:
        delivery.update(Delivery.ACCEPTED)  # the receiver waits for the sender to settle
    wire.pump()
    for ref in sent:
        ref().settle()
    wire.pump()
    for delivery in incoming:
        delivery.settle()
    wire.pump()
    client.events()
    server.events()
    del incoming
    gc.collect()
    assert [ref for ref in sent if ref() is not None] == []


# -- termini ------------------------------------------------------------------------------


def configure_source(source: Any, lib: Any) -> None:
    source.address = "orders/eu"
    source.dynamic = True
    lifetime = lib.Described(lib.symbol("amqp:delete-on-close:list"), [])
    source.properties.put_dict({lib.symbol("lifetime-policy"): lifetime})
    source.durability = Terminus.DELIVERIES
    source.expiry_policy = Terminus.EXPIRE_NEVER
    source.timeout = 42
    source.distribution_mode = Terminus.DIST_MODE_COPY
    selector = lib.Described(lib.symbol("apache.org:selector-filter:string"), "colour = 'red'")
    source.filter.put_dict({lib.symbol("selector"): selector})
    source.capabilities.put_object(
        lib.Array(lib.UNDESCRIBED, lib.Data.SYMBOL, lib.symbol("queue"), lib.symbol("shared"))
    )


def configure_target(target: Any, lib: Any) -> None:
    target.address = "replies"
    target.durability = Terminus.CONFIGURATION
    target.expiry_policy = Terminus.EXPIRE_WITH_CONNECTION
    target.timeout = 7
    target.capabilities.put_object(
        lib.Array(lib.UNDESCRIBED, lib.Data.SYMBOL, lib.symbol("temporary-queue"))
    )


def data_value(data: Any) -> Any:
    data.rewind()
    return data.get_object() if data.next() is not None else None


def plain(value: Any) -> Any:
    """An AMQP value with either library's wrappers turned into comparable data."""
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items()}
    if hasattr(value, "descriptor") and hasattr(value, "value"):
        return ("described", plain(value.descriptor), plain(value.value))
    if hasattr(value, "elements"):
        return [plain(element) for element in value.elements]
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return str(value) if isinstance(value, str) else value


@pairs
def test_every_terminus_field_crosses_intact(client_kind, server_kind):
    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server")
    wire = connect(client, server)
    session = client.connection.session()
    session.open()
    receiver = session.receiver("subscription")
    configure_source(receiver.source, client.lib)
    configure_target(receiver.target, client.lib)
    receiver.open()
    wire.pump()
    (attached,) = answer_opens(server)
    source, target = attached.remote_source, attached.remote_target
    assert source.type == Terminus.SOURCE and target.type == Terminus.TARGET
    assert (source.address, source.dynamic, source.timeout) == ("orders/eu", True, 42)
    assert source.durability == Terminus.DELIVERIES
    assert source.expiry_policy == Terminus.EXPIRE_NEVER
    assert source.distribution_mode == Terminus.DIST_MODE_COPY
    assert plain(data_value(source.properties)) == {
        "lifetime-policy": ("described", "amqp:delete-on-close:list", [])
    }
    assert plain(data_value(source.filter)) == {
        "selector": ("described", "apache.org:selector-filter:string", "colour = 'red'")
    }
    assert plain(data_value(source.capabilities)) == ["queue", "shared"]
    assert (target.address, target.timeout) == ("replies", 7)
    assert target.durability == Terminus.CONFIGURATION
    assert target.expiry_policy == Terminus.EXPIRE_WITH_CONNECTION
    assert plain(data_value(target.capabilities)) == ["temporary-queue"]
    # The answer echoes the termini back: the client reads them the same way.
    wire.pump()
    assert receiver.remote_source.address == "orders/eu"
    assert plain(data_value(receiver.remote_source.filter)) == plain(data_value(source.filter))


# -- frame trace --------------------------------------------------------------------------


def test_amqp_trace_prints_every_frame_in_and_out(monkeypatch, capsys):
    monkeypatch.setenv("AMQP_TRACE", "1")
    client = OurPeer(sasl=True)
    server = OurPeer(SERVER)
    assert client.transport.trace_frames and server.transport.trace_frames
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "traced", address="traced")
    receiver.flow(1)
    wire.pump()
    transfer(sender, b"x" * 100)
    wire.pump()
    take_messages(receiver)[0][0].update(Delivery.ACCEPTED)
    wire.pump()
    client.connection.close()
    wire.pump()
    lines = capsys.readouterr().err.splitlines()
    outgoing = " ".join(line for line in lines if " -> " in line)
    incoming = " ".join(line for line in lines if " <- " in line)
    for performative in (
        "SaslInit",
        "Open",
        "Begin",
        "Attach",
        "Flow",
        "Transfer",
        "Disposition",
        "Close",
    ):
        assert performative in outgoing, f"{performative} not traced going out"
        assert performative in incoming, f"{performative} not traced coming in"
    assert "SaslMechanisms" in incoming and "SaslOutcome" in incoming
    assert "address='traced'" in outgoing
    assert "100 bytes" in outgoing


def test_the_trace_is_off_by_default_and_can_be_switched_per_transport(monkeypatch, capsys):
    monkeypatch.delenv("AMQP_TRACE", raising=False)
    client = OurPeer()
    server = OurPeer(SERVER)
    assert not client.transport.trace_frames
    server.transport.trace_frames = True
    connect(client, server)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all("]:" in line for line in lines)
    assert any(" <- " in line and "Open" in line for line in lines)
    assert any(" -> " in line and "Open" in line for line in lines)


def test_the_trace_shows_heartbeats(monkeypatch, capsys):
    monkeypatch.setenv("AMQP_TRACE", "1")
    clock = FakeClock()
    client = OurPeer(idle_timeout=10.0)
    raw = RawPeer()
    wire = Wire(client, raw)
    client.connection.open()
    raw.header(AMQP_HEADER).frame(spec.Open(container_id="raw-peer", idle_time_out=2000))
    wire.pump()
    client.tick(clock.now)
    capsys.readouterr()
    client.transport.push(RawPeer().heartbeat().take_output())
    clock.advance(1.0)
    client.tick(clock.now)  # the peer wants a frame every 2 s: one goes out now
    wire.pump()
    assert [record.name for record in raw.frames][-1] == "empty"
    lines = capsys.readouterr().err.splitlines()
    assert any(" <- " in line for line in lines), "an incoming heartbeat was not traced"
    assert any(" -> " in line for line in lines), "an outgoing heartbeat was not traced"


# -- forgetting closed links and ended sessions -------------------------------------------


def our_ends(*peers: Peer) -> list[Any]:
    return [peer for peer in peers if peer.kind == "ours"]


def close_what_the_peer_closed(peer: Peer) -> None:
    """Answer every detach and end that arrived, as an application's handler would."""
    for event in peer.events():
        closed = event.name in ("LINK_REMOTE_CLOSE", "SESSION_REMOTE_CLOSE")
        if closed and event.context.state & LOCAL_ACTIVE:
            event.context.close()


@pairs
def test_a_thousand_links_attached_and_detached_leave_no_trace(client_kind, server_kind):
    """A long-lived connection that opens and closes links on one session keeps only
    the links still attached (Proton frees them with pn_link_free)."""
    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server")
    wire = connect(client, server, record=False)
    session = client.connection.session()
    session.open()
    wire.pump()
    answer_opens(server)
    wire.pump()
    ours = our_ends(client, server)
    for cycle in range(1000):
        link, _ = open_link(wire, "receiver", f"stream-{cycle}", session=session)
        link.close()
        wire.pump()
        close_what_the_peer_closed(server)
        wire.pump()
        client.events()
        for peer in ours:
            for each in peer.connection._sessions:
                assert len(each._links) <= 1
                assert not each._local_handles and not each._remote_handles
    for peer in ours:  # Proton keeps its endpoints until the application frees them
        assert links_of(peer.connection) == []
        assert peer.connection.link_head(0) is None
    assert session.state == LOCAL_ACTIVE | REMOTE_ACTIVE  # the session itself stays


@pairs
def test_a_thousand_sessions_begun_and_ended_leave_no_trace(client_kind, server_kind):
    client = make_peer(client_kind, "client")
    server = make_peer(server_kind, "server")
    wire = connect(client, server, record=False)
    ours = our_ends(client, server)
    for cycle in range(1000):
        sender, _ = open_link(wire, "sender", f"out-{cycle}")
        if cycle % 2:
            sender.close()  # a clean detach first; every other one ends with the session
        sender.session.close()
        wire.pump()
        close_what_the_peer_closed(server)
        wire.pump()
        client.events()
        for peer in ours:
            assert len(peer.connection._sessions) <= 1
            assert not peer.transport._local_channels and not peer.transport._remote_channels
    for peer in ours:
        assert peer.connection.session_head(0) is None
        assert peer.connection.link_head(0) is None
    assert client.connection.state == LOCAL_ACTIVE | REMOTE_ACTIVE


def answer_late(peer: Peer, wire: Wire) -> None:
    """Answer everything the other end did, as an application that was slow to: first
    end what it ended, then begin what it began (Proton's engine cannot begin a session
    in the same output pass that frees the channel it needs)."""
    events = peer.events()
    for event in events:
        if event.name == "SESSION_REMOTE_CLOSE" and not event.context.state & LOCAL_CLOSED:
            event.context.close()
    wire.pump()
    answer_opens(peer, events)
    wire.pump()


@pytest.mark.parametrize("server_kind", ["ours", "proton"])
def test_a_channel_is_taken_again_only_once_the_peer_answered_its_begin(server_kind):
    """Sessions whose begin the peer was slow to answer are given up (closed) and a new
    session opens. The peer's answering begin names our channel (spec 2.7.2,
    remote-channel): a session we close before that answer ends only once it came, and
    its channel is free only then. Freed at our end, the channel carried Begin and End
    pairs in a row, the late answer went to the wrong session, and the next one closed
    the whole connection with "begin answers unknown channel 1"; and a channel given
    back must wake a session waiting for one without any other write."""
    client = OurPeer()
    server = make_peer(server_kind, "server", channel_max=1)
    wire = connect(client, server)
    stream, _ = open_link(wire, "receiver", "stream")  # its session has channel 0
    server.events()
    given_up = [client.connection.session() for _ in range(3)]
    for session in given_up:
        session.open()
    wire.pump()  # the first takes channel 1; the server's application does not answer
    for session in given_up:
        session.close()
    fresh = client.connection.session()
    fresh.open()
    wire.pump()
    for _ in range(10):
        answer_late(server, wire)
        if fresh.state & REMOTE_ACTIVE:
            break
    assert client.transport.condition is None
    assert server.transport.condition is None
    assert fresh.state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert stream.session.state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert stream.state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert all(session.state & LOCAL_CLOSED for session in given_up)
    # Every begin answered ours: no session appeared that the peer began on its own.
    assert client.connection.sessions() == [stream.session, fresh]


@pytest.mark.parametrize("first", ["client", "server", "both"])
@pytest.mark.parametrize("other_kind", ["ours", "proton"])
def test_a_link_detached_by_either_side_is_forgotten_at_both(first, other_kind):
    client = make_peer("ours", "client")
    server = make_peer(other_kind, "server")
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "either")
    server.events()
    if first in ("client", "both"):
        sender.close()
    if first in ("server", "both"):
        receiver.close()
    wire.pump()
    assert sender in client.connection.links() or first == "both"
    close_what_the_peer_closed(client)
    close_what_the_peer_closed(server)
    wire.pump()
    assert sender.state == LOCAL_CLOSED | REMOTE_CLOSED
    assert receiver.state == LOCAL_CLOSED | REMOTE_CLOSED
    for peer in our_ends(client, server):
        assert links_of(peer.connection) == []
    session = sender.session
    assert session.links() == [] and not session._local_handles and not session._remote_handles
    # The session lives on and can attach a link by the same name again.
    again, _ = open_link(wire, "sender", "either", session=session)
    assert links_of(client.connection) == [again]


@pytest.mark.parametrize("ender", ["client", "server"])
@pytest.mark.parametrize("other_kind", ["ours", "proton"])
def test_a_session_end_forgets_the_links_it_implicitly_detached(ender, other_kind):
    client = make_peer("ours", "client")
    server = make_peer(other_kind, "server")
    wire = connect(client, server)
    sender, receiver = open_link(wire, "sender", "implicit")
    session = sender.session
    open_link(wire, "receiver", "implicit-back", session=session)
    server.events()
    (session if ender == "client" else receiver.session).close()  # no detach first
    wire.pump()
    close_what_the_peer_closed(client)
    close_what_the_peer_closed(server)
    wire.pump()
    for peer in our_ends(client, server):
        assert peer.connection.session_head(0) is None
        assert links_of(peer.connection) == []
        assert peer.connection._sessions == {}
    assert session.state == LOCAL_CLOSED | REMOTE_CLOSED
    assert sender.state & LOCAL_ACTIVE  # never detached on its own: only its session ended


def test_unsettled_deliveries_go_with_their_forgotten_link():
    client, server, wire, sender, receiver = sender_and_receiver("ours", "ours")
    receiver.flow(3)
    wire.pump()
    sent = [transfer(sender, b"%d" % index) for index in range(3)]
    wire.pump()
    incoming = [delivery for delivery, _ in take_messages(receiver)]
    assert len(incoming) == 3
    assert len(sender.session._outgoing_unsettled) == 3
    assert len(receiver.session._incoming_unsettled) == 3
    sender.close()
    wire.pump()
    close_what_the_peer_closed(server)
    wire.pump()
    assert sender.session._outgoing_unsettled == {}
    assert receiver.session._incoming_unsettled == {}
    # The application's own references still read as before.
    assert [delivery.settled for delivery in sent] == [False] * 3
    assert sender.unsettled == 3 and receiver.unsettled == 3


def test_an_application_holding_a_forgotten_link_can_still_read_it():
    client, server, wire, sender, receiver = sender_and_receiver("ours", "ours")
    receiver.condition = server.lib.Condition("amqp:resource-deleted", "queue deleted")
    receiver.close()
    wire.pump()
    sender.condition = client.lib.Condition("amqp:link:detach-forced", "as asked")
    sender.close()
    wire.pump()
    assert links_of(client.connection) == [] and links_of(server.connection) == []
    # Events put before it was forgotten still come out, for the same object.
    happened = [event for event in client.events() if event.context is sender]
    assert [event.name for event in happened] == ["LINK_REMOTE_CLOSE", "LINK_LOCAL_CLOSE"]
    assert sender.state == LOCAL_CLOSED | REMOTE_CLOSED
    assert sender.name == "flow"
    assert str(sender.remote_condition) == "amqp:resource-deleted: queue deleted"
    assert sender.condition.name == "amqp:link:detach-forced"
    assert sender.session.state == LOCAL_ACTIVE | REMOTE_ACTIVE
    assert sender.connection is client.connection
    assert sender.next(0) is None
    wire.forget()
    sender.close()  # closing again is a no-op, and no frame goes out for it
    sender.detach()
    wire.pump()
    assert wire.frames("client") == []
