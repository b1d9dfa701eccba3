"""Readers of the sources of truth. They never raise because the user's project is damaged:
damage is data (a parse error is recorded on the file it belongs to)."""
