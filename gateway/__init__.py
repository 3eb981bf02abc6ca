"""The HTTP, WebSocket and SSE gateway to AMQP 1.0: `gateway.app.create_app(settings)`
builds the FastAPI app, ``amqp-gateway`` (``python -m gateway``) runs it under uvicorn.

Modules: `settings` (flags and environment), `amqp` (the AMQP side and the embedded
broker), `mapping` (HTTP <-> AMQP messages), `routes/` (messages, streams, requests,
operations), `problems` (problem+json), `metrics`, `logs`, `idempotency`, `state`.
"""
