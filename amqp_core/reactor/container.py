"""The Container: Proton's event loop, on asyncio.

`Container(*handlers).run()` owns an event loop, as a script expects; `start()` runs
the same container inside a loop that is already running (uvicorn's), without blocking
it. Connections are opened with `connect()` and accepted with `listen()`; every engine
event is dispatched to the handler of the link, session or connection it concerns, or
else to the container's handlers, exactly as Proton does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

from ..engine.endpoints import (
    Connection,
    Endpoint,
    Link,
    NumberPool,
    Receiver,
    Sender,
    Session,
)
from ..engine.events import Collector, EventType
from ..engine.events import Event as EngineEvent
from ..engine.transport import Transport
from ..sslconfig import SSLDomain, ssl_context
from ..url import Url
from .backoff import Backoff
from .options import LinkOption

__all__ = ["Acceptor", "Container", "Event", "Task"]

log = logging.getLogger("amqp_core.reactor")


class Event(EngineEvent):
    """An engine event as handlers see it: with the container, and room for what the
    handlers add (`event.message`)."""

    REACTOR_INIT = EventType("REACTOR_INIT")
    REACTOR_FINAL = EventType("REACTOR_FINAL")
    #: Every event so far has been handled, and nothing has been written yet.
    REACTOR_QUIESCED = EventType("REACTOR_QUIESCED")
    TIMER_TASK = EventType("TIMER_TASK")

    __slots__ = ("container", "message", "__dict__")

    def __init__(self, type: EventType, context: Any, container: Container) -> None:
        super().__init__(type, context)
        self.container = container
        self.message: Any = None

    @property
    def reactor(self) -> Container:
        return self.container

    @property
    def task(self) -> Task | None:
        return self.context if isinstance(self.context, Task) else None


def dispatch(handler: Any, event: Event) -> None:
    """Call the handler's method for this event (or its `on_unhandled`), then do the
    same for each of its child `handlers`, as Proton's event dispatch does."""
    method_name = event.type.method
    method = getattr(handler, method_name, None)
    if method is not None:
        method(event)
    else:
        unhandled = getattr(handler, "on_unhandled", None)
        if unhandled is not None:
            unhandled(method_name, event)
    for child in getattr(handler, "handlers", ()) or ():
        dispatch(child, event)


class Task:
    """A scheduled call of a handler's `on_timer_task`; `cancel()` stops it."""

    def __init__(self, container: Container, handler: Any) -> None:
        self._container = container
        self.handler = handler
        self._timer: asyncio.TimerHandle | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self in self._container._tasks:
            self._container._tasks.discard(self)
            self._container._check_idle()

    def _fire(self) -> None:
        self._timer = None
        self._container._tasks.discard(self)
        if not self.cancelled:
            self._container._dispatch_now(
                Event(Event.TIMER_TASK, self, self._container), self.handler
            )


class Acceptor:
    """A listening socket; `close()` stops accepting (existing connections go on)."""

    def __init__(self, container: Container, url: Url) -> None:
        self._container = container
        self.url = url
        self._sockets: list[socket.socket] = []
        self._servers: list[asyncio.Task[asyncio.AbstractServer]] = []
        self._closed = False

    @property
    def port(self) -> int:
        """The port listened on (useful after listening on port 0)."""
        return int(self._sockets[0].getsockname()[1])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            if server.done() and not server.cancelled() and server.exception() is None:
                server.result().close()
            else:
                server.add_done_callback(_close_server)
        self._container._acceptors.discard(self)
        self._container._check_idle()


def _close_server(task: asyncio.Task[asyncio.AbstractServer]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


class _Driver(asyncio.Protocol):
    """Moves bytes between one socket and one engine transport."""

    def __init__(self, container: Container, connection: Connection, transport: Transport) -> None:
        self.container = container
        self.connection = connection
        self.transport = transport
        self.socket: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False
        # The socket's buffer is full: leave frames in the engine until it drains, so a
        # peer that does not read costs us no more than what we already hold.
        self._paused = False
        self._flush_scheduled = False

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.flush()
        self.container._process()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport subclass (uvloop's).
        self.socket = cast(asyncio.Transport, transport)
        self.container._drivers.add(self)
        self.transport.bind(self.connection)
        self.container._process()
        self.flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        self.transport.push(data)
        self.container._process()
        self.flush()
        transport = self.transport
        if self._timer is None and (transport.idle_timeout or transport.remote_idle_timeout):
            self._arm_timer()  # the open brought idle timeouts to watch

    def eof_received(self) -> bool:
        self.transport.close_tail()
        self.container._process()
        self.flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        transport = self.transport
        if not transport.closed:
            if exc is not None and transport.condition is None and not transport._close_received:
                transport._fail(
                    "amqp:connection:framing-error", f"connection lost: {exc}", write=False
                )
            transport.close_tail()
            transport.close_head()
        container = self.container
        container._drivers.discard(self)
        # Count as a pending connect while deciding whether to reconnect, so that the
        # container does not see itself idle and stop in between.
        container._pending_connects += 1
        try:
            container._process()
            container._connection_ended(self.connection)
        finally:
            container._pending_connects -= 1
            container._check_idle()

    def flush(self) -> None:
        socket = self.socket
        if socket is None or self._done or self._paused:
            return
        transport = self.transport
        data = transport.output()
        if socket.is_closing():
            return
        if data:
            socket.write(data)
        if transport.closed:
            socket.close()
        elif transport.more_output and not self._flush_scheduled:
            # The engine gives a large message a slice at a time: the next slice after
            # a turn of the loop, so that other connections and tasks go on between
            # slices (or once the socket drains, if this one filled it).
            self._flush_scheduled = True
            loop = self.container._loop
            assert loop is not None
            loop.call_soon(self._flush_more)

    def _flush_more(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def _arm_timer(self) -> None:
        loop = self.container._loop
        if self._done or loop is None:
            return
        deadline = self.transport.tick(loop.time())
        self.flush()
        if deadline:
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._arm_timer()
        self.container._process()
        self.flush()


class _ConnectionSettings:
    """What `connect()` was asked for, kept for reconnecting."""

    def __init__(self, urls: list[Url], **settings: Any) -> None:
        self.urls = urls
        self.settings = settings
        self.url_index = 0


class Container:
    """Proton's `Container`: connections, listeners and timers on one event loop."""

    def __init__(self, *handlers: Any, **kwargs: Any) -> None:
        self.handlers = list(handlers)
        self.container_id: str = kwargs.get("container_id") or str(uuid.uuid4())
        self.user: str | None = kwargs.get("user")
        self.password: str | None = kwargs.get("password")
        self.allowed_mechs: str | None = kwargs.get("allowed_mechs")
        self.sasl_enabled: bool = kwargs.get("sasl_enabled", True)
        self.ssl: Any = None
        self._collector = Collector()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drivers: set[_Driver] = set()
        self._dirty: set[Connection] = set()
        self._acceptors: set[Acceptor] = set()
        self._tasks: set[Task] = set()
        self._pending_connects = 0
        self._connections: dict[Connection, _ConnectionSettings] = {}
        self._stopped: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._started = False
        #: run() stops when nothing is left to do; start() keeps going until stop().
        self._auto_stop = False
        self._finished = False
        self._flush_scheduled = False
        self._processing = False
        #: Whether a handler's exception stops the container (run()) or only reaches
        #: the caller waiting on it (the blocking utilities).
        self._stop_on_error = True
        self._after_process: list[Callable[[], None]] = []
        self._before_start: list[Callable[[asyncio.AbstractEventLoop], Any]] = []

    # -- running ----------------------------------------------------------------------

    def run(self) -> None:
        """Run until there is nothing left to do (no connection, listener or timer)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("an event loop is already running here: use start() instead")
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._auto_stop = True
        self.start()
        await self.wait()

    def start(self) -> None:
        """Start in the running event loop and return at once."""
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        for action in self._before_start:
            action(self._loop)
        self._before_start.clear()
        self._dispatch_now(Event(Event.REACTOR_INIT, self, self), None)
        self._check_idle()

    async def wait(self) -> None:
        """Wait until the container has stopped; raise what a handler raised."""
        assert self._stopped is not None, "start() first"
        await self._stopped
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def stop(self) -> None:
        """Close every connection and listener, cancel timers, and stop."""
        for acceptor in list(self._acceptors):
            acceptor.close()
        for task in list(self._tasks):
            task.cancel()
        for driver in list(self._drivers):
            driver.connection.close()
            driver.flush()
            if driver.socket is not None:
                driver.socket.close()
        for connection in list(self._connections):
            self._connections.pop(connection, None)
        self._finish()

    def _finish(self) -> None:
        if self._finished or self._stopped is None:
            return
        self._finished = True
        self._dispatch_now(Event(Event.REACTOR_FINAL, self, self), None)
        if not self._stopped.done():
            self._stopped.set_result(None)

    def _check_idle(self) -> None:
        if not self._auto_stop or not self._started or self._processing:
            return
        if not (self._drivers or self._acceptors or self._tasks or self._pending_connects):
            self._finish()

    # -- events -------------------------------------------------------------------------

    def _handler_for(self, context: Any) -> Any:
        link = getattr(context, "link", None)
        if link is not None and link.handler is not None:
            return link.handler
        session = getattr(context, "session", None)
        if session is not None and not callable(session) and session.handler is not None:
            return session.handler
        connection = getattr(context, "connection", None)
        if connection is not None and connection.handler is not None:
            return connection.handler
        return None

    def _dispatch_now(self, event: Event, handler: Any) -> None:
        try:
            if handler is not None:
                dispatch(handler, event)
            else:
                for global_handler in self.handlers:
                    if event.type is Event.REACTOR_INIT and not hasattr(
                        global_handler, "on_reactor_init"
                    ):
                        start = getattr(global_handler, "on_start", None)
                        if start is not None:
                            start(event)
                            continue
                    dispatch(global_handler, event)
        except BaseException as error:  # a handler failed: stop and re-raise from run()
            self._fail(error)
            return
        self._process()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._stop_on_error:
            self.stop()
        for listener in self._after_process:
            listener()

    def _process(self) -> None:
        """Dispatch every queued engine event, then write what they caused."""
        if self._processing:
            return
        self._processing = True
        try:
            collector = self._collector
            quiesced = False
            while True:
                engine_event = collector.pop()
                if engine_event is not None:
                    event = Event(engine_event.type, engine_event.context, self)
                    if event.type is EngineEvent.CONNECTION_REMOTE_OPEN:
                        self._connected(event.context)
                    handler = self._handler_for(event.context)
                elif quiesced:
                    break
                else:
                    # Once per pass, before output is written: the last chance to do
                    # something (a batched disk write, say) before peers hear of it.
                    quiesced = True
                    event = Event(Event.REACTOR_QUIESCED, self, self)
                    handler = None
                try:
                    if handler is not None:
                        dispatch(handler, event)
                    else:
                        for global_handler in self.handlers:
                            dispatch(global_handler, event)
                except BaseException as error:
                    self._processing = False
                    self._fail(error)
                    return
        finally:
            self._processing = False
        self._flush_dirty()
        for listener in self._after_process:
            listener()
        self._check_idle()

    def _on_work(self, connection: Connection) -> None:
        self._dirty.add(connection)
        if not self._processing and not self._flush_scheduled and self._loop is not None:
            # Work caused outside event dispatch (a timer, another task): write soon.
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._process()

    def _flush_dirty(self) -> None:
        while self._dirty:
            dirty, self._dirty = self._dirty, set()
            for connection in dirty:
                driver = getattr(connection, "_driver", None)
                if driver is not None:
                    driver.flush()
            if self._collector.peek() is not None:
                self._process()
                return

    # -- connections --------------------------------------------------------------------

    def connect(
        self,
        url: str | Url | None = None,
        urls: Iterable[str | Url] | None = None,
        address: str | None = None,
        handler: Any = None,
        reconnect: Any = None,
        heartbeat: float | None = None,
        ssl_domain: SSLDomain | None = None,
        **kwargs: Any,
    ) -> Connection:
        """Open a connection to `url` (or the first of `urls` that answers)."""
        targets = [Url(u) for u in urls] if urls else [Url(url or address or "localhost:5672")]
        connection = Connection()
        connection.handler = handler
        connection.container = kwargs.get("container_id") or self.container_id
        connection.offered_capabilities = kwargs.get("offered_capabilities")
        connection.desired_capabilities = kwargs.get("desired_capabilities")
        connection.properties = kwargs.get("properties")
        virtual_host = kwargs.get("virtual_host")
        connection.hostname = virtual_host or targets[0].host
        connection.user = kwargs.get("user", self.user)
        connection.password = kwargs.get("password", self.password)
        if targets[0].username and connection.user is None:
            connection.user = targets[0].username
            connection.password = targets[0].password
        connection.collect(self._collector)
        connection.work_listener = self._on_work
        if reconnect is None:
            reconnect = Backoff()
        settings = _ConnectionSettings(
            targets,
            reconnect=reconnect,
            heartbeat=heartbeat,
            ssl_domain=ssl_domain,
            sasl_enabled=kwargs.get("sasl_enabled", self.sasl_enabled),
            allowed_mechs=kwargs.get("allowed_mechs", self.allowed_mechs),
            max_frame_size=kwargs.get("max_frame_size"),
            sni=kwargs.get("sni"),
            virtual_host=virtual_host,
        )
        self._connections[connection] = settings
        connection._default_session = None  # type: ignore[attr-defined]
        connection.open()
        self._start_connect(connection, 0.0)
        return connection

    def _start_connect(self, connection: Connection, delay: float) -> None:
        self._pending_connects += 1
        self._when_started(lambda loop: loop.create_task(self._connect_after(connection, delay)))

    def _when_started(self, action: Callable[[asyncio.AbstractEventLoop], Any]) -> None:
        """Run `action(loop)` now if the container runs, else as soon as it starts:
        connect, listen and schedule may be called before run(), as in Proton."""
        if self._loop is not None:
            action(self._loop)
        else:
            self._before_start.append(action)

    async def _connect_after(self, connection: Connection, delay: float) -> None:
        settings = self._connections.get(connection)
        try:
            if delay:
                await asyncio.sleep(delay)
            if settings is None or connection not in self._connections:
                return
            url = settings.urls[settings.url_index % len(settings.urls)]
            settings.url_index += 1
            transport = self._new_client_transport(connection, settings)
            driver = _Driver(self, connection, transport)
            connection._driver = driver  # type: ignore[attr-defined]
            context = self._client_ssl(url, settings)
            server_hostname = None
            if context is not None:
                server_hostname = (
                    settings.settings["sni"] or settings.settings["virtual_host"] or url.host
                )
            assert self._loop is not None
            try:
                await self._loop.create_connection(
                    lambda: driver,
                    url.host or "localhost",
                    int(url.port or 5672),
                    ssl=context,
                    server_hostname=server_hostname,
                )
            except (OSError, ssl.SSLError) as error:
                self._connect_failed(connection, transport, error)
        except Exception as error:  # a bug or a handler's error: surface it, do not lose it
            self._fail(error)
        finally:
            self._pending_connects -= 1
            self._check_idle()

    def _new_client_transport(
        self, connection: Connection, settings: _ConnectionSettings
    ) -> Transport:
        options = settings.settings
        transport = Transport(Transport.CLIENT)
        if options["max_frame_size"]:
            transport.max_frame_size = int(options["max_frame_size"])
        if options["heartbeat"]:
            transport.idle_timeout = float(options["heartbeat"])
        if options["sasl_enabled"]:
            sasl = transport.sasl()
            if options["allowed_mechs"]:
                sasl.allowed_mechs(options["allowed_mechs"])
        return transport

    def _client_ssl(self, url: Url, settings: _ConnectionSettings) -> ssl.SSLContext | None:
        domain = settings.settings["ssl_domain"]
        if domain is None and url.scheme == "amqps":
            domain = SSLDomain(SSLDomain.MODE_CLIENT)
        return ssl_context(domain) if domain is not None else None

    def _connect_failed(
        self, connection: Connection, transport: Transport, error: BaseException
    ) -> None:
        transport.bind(connection)
        transport._fail("proton:io", f"{error}", write=False)
        transport.close_head()
        self._process()
        self._connection_ended(connection)

    def _connected(self, connection: Connection) -> None:
        """A connection is up: the next outage backs off from the start again."""
        settings = self._connections.get(connection)
        if settings is not None and settings.settings["reconnect"] not in (False, None):
            settings.settings["reconnect"].reset()
            settings.url_index = 0

    def _connection_ended(self, connection: Connection) -> None:
        """The socket is gone: reconnect if asked to and the connection is still wanted."""
        settings = self._connections.get(connection)
        if (
            settings is None
            or connection._local == Endpoint.LOCAL_CLOSED
            or settings.settings["reconnect"] is False
        ):
            self._connections.pop(connection, None)
            self._check_idle()
            return
        backoff = settings.settings["reconnect"]
        # Fail over to the next url at once; back off once every url has failed.
        delay = backoff.next() if settings.url_index % len(settings.urls) == 0 else 0.0
        _reset_for_reconnect(connection)
        self._start_connect(connection, delay)

    def listen(
        self, url: str | Url, ssl_domain: SSLDomain | None = None, **kwargs: Any
    ) -> Acceptor:
        """Accept AMQP connections on `url`'s host and port.

        Extra keywords set up SASL for accepted connections: `authenticator`
        (a callable (user, password) -> bool that enables PLAIN) and
        `allow_anonymous` (default True), `require_sasl` (default False).
        """
        parsed = Url(url)
        acceptor = Acceptor(self, parsed)
        self._acceptors.add(acceptor)
        context = ssl_context(ssl_domain) if ssl_domain is not None else None

        def accept() -> _Driver:
            connection = Connection()
            connection.container = self.container_id
            connection.collect(self._collector)
            connection.work_listener = self._on_work
            transport = Transport(Transport.SERVER)
            sasl = transport.sasl()
            sasl.authenticator = kwargs.get("authenticator")
            sasl.allow_anonymous = kwargs.get("allow_anonymous", True)
            if sasl.authenticator is None:
                sasl.allowed_mechs("ANONYMOUS")
            transport.require_auth(kwargs.get("require_sasl", False))
            driver = _Driver(self, connection, transport)
            connection._driver = driver  # type: ignore[attr-defined]
            return driver

        host = parsed.host if parsed.host not in (None, "", "0.0.0.0") else None
        port = parsed.port
        acceptor._sockets = _bind(host, 5672 if port is None else int(port))

        def serve(loop: asyncio.AbstractEventLoop) -> None:
            for listener in acceptor._sockets:
                server = loop.create_server(accept, sock=listener, ssl=context)
                acceptor._servers.append(loop.create_task(server))

        self._when_started(serve)
        return acceptor

    def schedule(self, delay: float, handler: Any = None) -> Task:
        """Call `handler.on_timer_task(event)` after `delay` seconds."""
        task = Task(self, handler)
        self._tasks.add(task)

        def arm(loop: asyncio.AbstractEventLoop) -> None:
            if not task.cancelled:
                task._timer = loop.call_later(max(delay, 0.0), task._fire)

        self._when_started(arm)
        return task

    # -- links ------------------------------------------------------------------------

    def _session(self, context: Any) -> Session:
        if isinstance(context, Session):
            return context
        if isinstance(context, Connection):
            session = getattr(context, "_default_session", None)
            if session is None or session._local == Endpoint.LOCAL_CLOSED:
                session = context.session()
                session.open()
                context._default_session = session  # type: ignore[attr-defined]
            return session
        raise TypeError(f"expected a Connection, Session or URL, not {type(context).__name__}")

    def _link_name(self, connection: Connection, *addresses: str | None) -> str:
        """Proton's default name, container-address; made unique if the connection
        already has a link by that name (or there is no address to name it by)."""
        container = connection.container or self.container_id
        base = "-".join([container, *(address for address in addresses if address)])
        if base != container and base not in {link.name for link in connection.links()}:
            return base
        return f"{base}-{uuid.uuid4()}"

    def create_sender(
        self,
        context: Connection | Session | str | Url,
        target: str | None = None,
        source: str | None = None,
        name: str | None = None,
        handler: Any = None,
        tags: Callable[[], bytes] | None = None,
        options: LinkOption | list[LinkOption] | None = None,
    ) -> Sender:
        """Open a link to send to `target` (by default the URL's path)."""
        if isinstance(context, (str, Url)):
            url = Url(context)
            target = target or url.path
            context = self.connect(url)
        session = self._session(context)
        sender = session.sender(name or self._link_name(session.connection, target, source))
        if source:
            sender.source.address = source
        if target:
            sender.target.address = target
        if handler is not None:
            sender.handler = handler
        if tags is not None:
            sender.delivery_tag = tags  # type: ignore[method-assign]
        _apply_options(options, sender)
        sender.open()
        return sender

    def create_receiver(
        self,
        context: Connection | Session | str | Url,
        source: str | None = None,
        target: str | None = None,
        name: str | None = None,
        dynamic: bool = False,
        handler: Any = None,
        options: LinkOption | list[LinkOption] | None = None,
    ) -> Receiver:
        """Open a link to receive from `source` (by default the URL's path)."""
        if isinstance(context, (str, Url)):
            url = Url(context)
            source = source or url.path
            context = self.connect(url)
        session = self._session(context)
        receiver = session.receiver(name or self._link_name(session.connection, source, target))
        if source:
            receiver.source.address = source
        if dynamic:
            receiver.source.dynamic = True
        if target:
            receiver.target.address = target
        if handler is not None:
            receiver.handler = handler
        _apply_options(options, receiver)
        receiver.open()
        return receiver


def _apply_options(options: LinkOption | list[LinkOption] | None, link: Link) -> None:
    if options is None:
        return
    for option in options if isinstance(options, (list, tuple)) else [options]:
        if option.test(link):
            option.apply(link)


def _bind(host: str | None, port: int) -> list[socket.socket]:
    """Bind listening sockets for every address of `host` (IPv4 and IPv6 alike), now,
    so that a client may connect as soon as `listen()` returns."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[Any] = set()
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and sockets:  # one port for every address
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            listener.bind(address)
            listener.listen(128)
            listener.setblocking(False)
        except OSError as failure:
            listener.close()
            error = failure
            continue
        sockets.append(listener)
    if not sockets:
        raise error or OSError(f"cannot listen on {host}:{port}")
    return sockets


def _reset_for_reconnect(connection: Connection) -> None:
    """Forget everything the last transport knew, keeping what the application opened,
    so that a new transport opens the same sessions and links again."""
    connection._remote = Endpoint.REMOTE_UNINIT
    connection.remote_condition = None
    connection.transport = None
    for session in connection._sessions:
        if session._local == Endpoint.LOCAL_CLOSED:
            continue
        session._remote = Endpoint.REMOTE_UNINIT
        session.channel = session.remote_channel = None
        session._begin_sent = session._end_sent = False
        session.next_outgoing_id = 0
        session.next_incoming_id = None
        session.remote_incoming_window = session.remote_outgoing_window = 0
        session._next_delivery_id = 0
        session._outgoing_unsettled.clear()
        session._incoming_unsettled.clear()
        session._pending_dispositions.clear()
        session._local_handles.clear()
        session._handle_numbers = NumberPool()
        session._waiting_for_handle.clear()
        session._blocked_senders.clear()
        session._remote_handles.clear()
        for link in session._links:
            if link._local == Endpoint.LOCAL_CLOSED:
                continue
            link._remote = Endpoint.REMOTE_UNINIT
            link.handle = link.remote_handle = None
            link._attach_sent = link._detach_sent = False
            link.delivery_count = 0
            link._link_credit = 0
            link.drain_mode = False
            link._deliveries.clear()
            link.current = None
            link._incoming_partial = None
            link.unsettled_count = 0
            if isinstance(link, Sender):
                link.queued = 0
            session._dirty_links[link] = None
        connection._dirty[session] = None
    connection._needs_output = False
    connection._wake()
