"""Jinja templates for runtime images. A regular package so the templates load as package data."""
