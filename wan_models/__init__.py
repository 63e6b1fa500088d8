"""Model packages for pytest-flopcheck."""
