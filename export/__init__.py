"""Export stage of edgeage: one module per format, quantizers."""
