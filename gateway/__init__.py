"""The HTTP/WebSocket gateway to AMQP lives here (built in a later issue)."""
