"""The webhook receiver: Meta's handshake, signature check, splitting, and Kafka."""
