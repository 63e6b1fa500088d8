"""DeepSeek-OCR (v1): analytic cost models, each part checked against the native transformers
module that implements it (v1's own code is not installable; see ``reference.py``)."""
