"""Kafka: connecting (plain, TLS, SASL, MSK IAM), publishing with bounded acknowledgement,
the topics, and the records of ``consent-events``."""
