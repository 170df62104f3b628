"""Declarations: settings, mapping declarations and the mapping registry. Never opens a connection."""
