"""Reflex state classes: thin; they call services and keep view data."""
