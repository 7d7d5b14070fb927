"""The send engine: the delivery queue protocol, and (later) the worker that drains it. No Qt."""
