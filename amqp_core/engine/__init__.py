"""The sans-IO AMQP 1.0 protocol engine."""
