"""Real local services for development and tests: an Apache Kafka broker (KRaft, from Maven
Central jars) and a redis-server, on free loopback ports, each with its own data directory and
logs. Used by the test suite, by ``wawindow dev`` and by ``wawindow services``."""
