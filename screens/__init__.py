"""Textual screens of the fieldtui console. They render and dispatch; services live in fieldtui/."""
