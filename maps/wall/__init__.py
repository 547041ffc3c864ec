"""The operators' wall map: the page, its data, and its live feed."""
