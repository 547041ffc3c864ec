"""Live map dashboards and leaders' review pages (folium pages fed over websockets)."""
