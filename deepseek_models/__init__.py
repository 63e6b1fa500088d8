"""DeepSeek-OCR model packages for pytest-flopcheck: ``deepseek_ocr`` (v1) and ``deepseek_ocr2``,
each registered through the ``flopcheck`` entry point, built on :mod:`deepseek_models.shared`."""
