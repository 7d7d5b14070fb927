"""The send engine: the queue, message building and delivery (no Qt)."""
