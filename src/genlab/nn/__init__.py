"""Neural-network building blocks (no model family lives here)."""
from genlab.nn.blocks import ConvDecoder, ConvEncoder, activation, conv_sizes, mlp

__all__ = ["ConvDecoder", "ConvEncoder", "activation", "conv_sizes", "mlp"]
