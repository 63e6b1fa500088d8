"""The parts both DeepSeek OCR models share, as peers: the MoE language decoder (analytic and its
transformers reference calls), SAM with its neck and compressor, the decoder's serving figures
and stages, and the workload fields every OCR generation has."""
