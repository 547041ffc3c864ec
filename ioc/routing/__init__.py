"""Routing: boundaries, the point-in-polygon index, responsibility rules, and the router."""
