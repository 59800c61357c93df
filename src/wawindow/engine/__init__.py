"""The window engine: conversation state in Redis, transitions published to Kafka."""
