"""DeepSeek-OCR model packages for pytest-flopcheck (in progress: not registered yet)."""
