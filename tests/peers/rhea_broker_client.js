// A rhea client of amqp_core's broker, driven by tests/test_broker_rhea.py.
//
// Usage: node rhea_broker_client.js '<json config>'; it connects to config.host:port,
// opens one link, prints what happens as JSON lines on stdout, and exits when done.
//
//   {"role": "send", "address": A, "messages": [{body, application_properties}, ...]}
//       sends the messages as credit allows; prints {"event": "settled", "outcomes": [...]}
//       (one outcome per message, in order) once every one of them was settled.
//   {"role": "receive", "address": A, "count": N | "until": BODY,
//    "selector": S, "distribution_mode": "copy", "credit": C}
//       receives (rhea accepts each message, as it does by default), until N messages
//       came or one whose body is BODY did; prints {"event": "received", "messages": [...]}.
//
// Both print {"event": "attached", "source": ..., "target": ...} with the broker's
// answer to the attach as rhea sees it, {"event": "link_error", condition, description}
// when the broker detaches the link with an error, and {"event": "done"} at the end.
'use strict';

const rhea = require('rhea');

// A client never outlives a test, even when the test run is killed.
setTimeout(() => {
    emit('timeout');
    process.exit(3);
}, 60 * 1000).unref();

const config = JSON.parse(process.argv[2]);

function emit(event, fields) {
    process.stdout.write(JSON.stringify(Object.assign({event: event}, fields || {})) + '\n');
}

// JSON for a value rhea decoded: described values (a selector filter) as
// {descriptor, value}, with numeric descriptors in hex; Buffers as strings.
function plain(value) {
    if (value === null || value === undefined) return null;
    if (Buffer.isBuffer(value)) return value.toString();
    if (Array.isArray(value)) return value.map(plain);
    if (value.descriptor !== undefined) {
        return {descriptor: descriptor(value.descriptor), value: plain(value.value)};
    }
    if (value.type !== undefined && value.type.typecode !== undefined) return plain(value.value);
    if (typeof value === 'object') {
        const out = {};
        for (const key of Object.keys(value)) out[key] = plain(value[key]);
        return out;
    }
    return value;
}

// A descriptor: a symbol as its name, a number (ulong) in hex.
function descriptor(value) {
    const inner = value && value.type !== undefined && value.type.typecode !== undefined ? value.value : value;
    if (typeof inner === 'number' || typeof inner === 'bigint') return '0x' + inner.toString(16);
    if (Buffer.isBuffer(inner)) return '0x' + inner.toString('hex');
    return plain(inner);
}

function terminus(value) {
    if (!value) return null;
    const fields = {};
    for (const name of ['address', 'distribution_mode', 'filter']) {
        if (value[name] !== undefined && value[name] !== null) fields[name] = plain(value[name]);
    }
    return fields;
}

function finish(connection) {
    emit('done');
    connection.close();
}

const container = rhea.create_container({id: 'rhea-broker-client-' + config.role});
const connection = container.connect({host: config.host, port: config.port, reconnect: false});

container.on('connection_error', (context) => {
    const error = context.connection.error || {};
    emit('connection_error', {condition: error.condition || null, description: error.description || null});
});
container.on('disconnected', (context) => {
    if (context.error) emit('transport_error', {description: String(context.error)});
    process.exit(0);
});
container.on('connection_close', () => process.exit(0));

function onLinkError(link) {
    const error = link.error || {};
    emit('link_error', {condition: error.condition || null, description: error.description || null});
    finish(connection);
}

if (config.role === 'send') {
    const pending = config.messages.slice();
    const outcomes = new Array(config.messages.length).fill(null);
    let settled = 0;
    const sender = connection.open_sender({target: {address: config.address}});
    sender.on('sender_open', (context) => {
        emit('attached', {source: terminus(context.sender.source), target: terminus(context.sender.target)});
    });
    // Send on the next turn of the event loop, as tests/peers/rhea_peer.js does.
    sender.on('sendable', () => setImmediate(() => {
        while (pending.length && sender.sendable()) {
            const index = config.messages.length - pending.length;
            const delivery = sender.send(pending.shift());
            delivery.index = index;
        }
    }));
    function outcome(name) {
        return (context) => {
            outcomes[context.delivery.index] = name;
            settled += 1;
            if (settled === config.messages.length) {
                emit('settled', {outcomes: outcomes});
                finish(connection);
            }
        };
    }
    sender.on('accepted', outcome('accepted'));
    sender.on('released', outcome('released'));
    sender.on('rejected', outcome('rejected'));
    sender.on('modified', outcome('modified'));
    sender.on('sender_error', (context) => onLinkError(context.sender));
} else {
    const source = {address: config.address};
    if (config.selector !== undefined) source.filter = rhea.filter.selector(config.selector);
    if (config.distribution_mode !== undefined) source.distribution_mode = config.distribution_mode;
    const options = {source: source};
    if (config.credit !== undefined) options.credit_window = config.credit;
    const receiver = connection.open_receiver(options);
    const messages = [];
    receiver.on('receiver_open', (context) => {
        emit('attached', {source: terminus(context.receiver.source), target: terminus(context.receiver.target)});
    });
    receiver.on('message', (context) => {
        const message = context.message;
        messages.push({
            body: message.body,
            application_properties: message.application_properties || null,
            delivery_count: message.delivery_count || 0,
            settled_by_broker: Boolean(context.delivery.remote_settled),
        });
        const last = config.until !== undefined
            ? message.body === config.until
            : messages.length === config.count;
        if (last) {
            emit('received', {messages: messages});
            // Let rhea send the accept of the last message before the close.
            setImmediate(() => finish(connection));
        }
    });
    receiver.on('receiver_error', (context) => onLinkError(context.receiver));
}
