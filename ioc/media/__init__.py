"""Photos on field reports: checking uploads, the media store, and the media records."""
