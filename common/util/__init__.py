"""Lowest layer: files and the machine; imports nothing of the project."""
