"""Thin Lambda handlers: parse the event, call core, return. Wiring lives in ``functions._wiring``."""
