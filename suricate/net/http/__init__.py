"""HTTP listeners (``[[listen.http]]``) and their request handlers: Prometheus metrics,
GraphQL, and later WebSocket (RFC 7395) and BOSH (XEP-0206)."""
