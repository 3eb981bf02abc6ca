"""The embedded AMQP 1.0 broker.

`amqp_core.broker.server.Broker` (a MessagingHandler) configured by `BrokerConfig`; run
it with ``amqp-broker`` (``python -m amqp_core.broker``) or in a program with
``Container(Broker(BrokerConfig(address="localhost:5672"))).run()``. The submodules are
not imported here, so that using one (the store, the selectors) does not load the rest.
"""
