"""The HTTP and WebSocket API: thin routers over the domain."""
