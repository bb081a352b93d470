"""seqresearch: why attention beats RNNs/LSTMs on long-range dependencies, and where it does not."""

__version__ = "0.1.0"
