"""Geography for routing: which jurisdiction a point belongs to."""
