"""Redis: connecting (a single server, a Cluster, Sentinel; TLS and ACL users), with every
call bounded, and the settings that say how."""
