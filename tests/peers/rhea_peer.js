'use strict';
// One side of an interop test, written with rhea: the same roles, scenarios, config and
// JSON-lines events as messaging_peer.py (read its docstring), so tests/test_interop.py
// drives both peers alike.
//
// Usage: node rhea_peer.js '<config as JSON>'

const crypto = require('crypto');
const fs = require('fs');
const rhea = require('rhea');

// A peer never outlives a test, even when the test run is killed.
const LIFETIME_MS = 120 * 1000;
setTimeout(() => process.exit(3), LIFETIME_MS).unref();

const config = JSON.parse(process.argv[2]);
const count = config.count === undefined ? 1 : config.count;
const size = config.size === undefined ? null : config.size;

function emit(event, fields) {
    process.stdout.write(JSON.stringify(Object.assign({event: event}, fields || {})) + '\n');
}

// A message body as JSON: blobs (binary values or data sections) by size and digest.
function describe(body) {
    if (body && body.typecode === 0x75) body = body.content;
    if (Buffer.isBuffer(body)) {
        return {size: body.length, sha256: crypto.createHash('sha256').update(body).digest('hex')};
    }
    return body;
}

function conditionFields(error) {
    if (!error) return {condition: null, description: null};
    return {condition: error.condition || null, description: error.description || error.message || null};
}

// What a source sends, reporting blobs as it makes them.
function makeBodies() {
    const bodies = [];
    if (size === null) {
        for (let i = 0; i < count; i++) bodies.push(i);
        return bodies;
    }
    for (let i = 0; i < count; i++) bodies.push(crypto.randomBytes(size));
    emit('sent', {bodies: bodies.map(describe)});
    return bodies;
}

function asMessage(body) {
    return Buffer.isBuffer(body) ? {body: rhea.message.data_section(body)} : {body: body};
}

const container = rhea.create_container({id: 'rhea-' + config.role});
const toSend = {};
const received = {};
const accepted = {};
const expectedAccepts = {};
const expectedMessages = {};
let linkDone = function () {};

function sendPending(sender) {
    const pending = toSend[sender.name] || [];
    while (pending.length && sender.sendable()) sender.send(asMessage(pending.shift()));
}

// Send on the next turn of the event loop: rhea 3.0.5 writes a session's transfers
// before its links' attach frames, so a transfer sent while the peer's attach and flow
// are being read would otherwise go out before the attach that answers them.
container.on('sendable', (context) => setImmediate(() => sendPending(context.sender)));

container.on('accepted', (context) => {
    const name = context.delivery.link.name;
    accepted[name] = (accepted[name] || 0) + 1;
    if (accepted[name] === expectedAccepts[name]) {
        emit('accepted', {link: name, count: accepted[name]});
        linkDone(name);
    }
});

container.on('message', (context) => {
    const name = context.receiver.name;
    const bodies = received[name] = received[name] || [];
    bodies.push(describe(context.message.body));
    if (bodies.length === expectedMessages[name]) {
        emit('received', {link: name, bodies: bodies});
        linkDone(name);
    }
});

container.on('connection_error', (context) => {
    const error = context.connection.error || context.error;
    const fields = conditionFields(error);
    // A failure before the peer's open (SASL, TLS) is a transport error in Proton's terms.
    const remoteClose = context.connection.remote && context.connection.remote.close;
    emit(remoteClose && remoteClose.error ? 'connection_error' : 'transport_error', fields);
});
container.on('sender_error', (context) => emit('link_error', conditionFields(context.sender.error)));
container.on('receiver_error', (context) => emit('link_error', conditionFields(context.receiver.error)));
container.on('disconnected', (context) => {
    if (context.error) emit('transport_error', conditionFields(context.error));
    emit('disconnected');
});
container.on('error', (error) => emit('transport_error', conditionFields(error)));

function listen() {
    const options = {host: config.host, port: config.port};
    if (config.idle_timeout) options.idle_time_out = config.idle_timeout * 1000;
    if (config.tls) {
        options.transport = 'tls';
        options.cert = fs.readFileSync(config.tls.cert);
        options.key = fs.readFileSync(config.tls.key);
    }
    if (config.users) {
        container.sasl_server_mechanisms.enable_plain((user, password) => config.users[user] === password);
    }
    container.on('connection_open', (context) => {
        const sasl = context.connection.sasl_transport;
        emit('opened', {user: sasl && sasl.mechanism ? sasl.mechanism.username || null : null});
    });
    container.on('sender_open', (context) => {
        const sender = context.sender;
        if (sender.source && sender.source.dynamic) {
            const address = 'dynamic-' + crypto.randomUUID();
            sender.set_source({address: address});
            toSend[sender.name] = [address];
            expectedAccepts[sender.name] = 1;
            emit('link', {link: sender.name, address: address});
        } else {
            sender.set_source({address: sender.source ? sender.source.address : null});
            toSend[sender.name] = makeBodies();
            expectedAccepts[sender.name] = count;
        }
    });
    container.on('receiver_open', (context) => {
        const receiver = context.receiver;
        receiver.set_target({address: receiver.target ? receiver.target.address : null});
        expectedMessages[receiver.name] = count;
    });
    const server = container.listen(options);
    server.on('listening', () => emit('ready', {port: server.address().port}));
    server.on('error', (error) => emit('transport_error', conditionFields(error)));
}

function connect() {
    const scenario = config.scenario;
    const options = {host: config.host, port: config.port, reconnect: false};
    if (config.idle_timeout) options.idle_time_out = config.idle_timeout * 1000;
    if (config.user !== undefined) options.username = config.user;
    if (config.password !== undefined) options.password = config.password;
    if (config.tls) {
        options.transport = 'tls';
        options.ca = [fs.readFileSync(config.tls.ca)];
        options.rejectUnauthorized = true;
        if (config.sni) options.servername = config.sni;
    }
    const connection = container.connect(options);
    const doneLinks = new Set();
    const wanted = {messages: ['to-sink', 'from-source'], dynamic: ['dynamic']}[scenario] || ['after-idle'];
    function finish() {
        emit('done');
        connection.close();
    }
    linkDone = (name) => {
        doneLinks.add(name);
        if (wanted.every((link) => doneLinks.has(link))) finish();
    };
    connection.on('connection_open', () => {
        emit('opened');
        if (scenario === 'open') {
            finish();
        } else if (scenario === 'heartbeat') {
            setTimeout(() => {
                toSend['after-idle'] = ['after idling'];
                expectedAccepts['after-idle'] = 1;
                connection.open_sender({name: 'after-idle', target: {address: 'sink'}});
            }, config.delay * 1000);
        }
    });
    if (scenario === 'messages') {
        toSend['to-sink'] = makeBodies();
        expectedAccepts['to-sink'] = count;
        expectedMessages['from-source'] = count;
        connection.open_sender({name: 'to-sink', target: {address: 'sink'}});
        connection.open_receiver({name: 'from-source', source: {address: 'source'}});
    } else if (scenario === 'dynamic') {
        expectedMessages.dynamic = 1;
        const receiver = connection.open_receiver({name: 'dynamic', source: {dynamic: true}});
        receiver.on('receiver_open', (context) => {
            emit('link', {link: 'dynamic', address: context.receiver.source.address});
        });
    }
}

if (config.role === 'listen') listen(); else connect();
