"""The leaders' review: its queries, the page, and its routes."""
