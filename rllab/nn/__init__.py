"""Networks a checkpoint spec describes: policies, input filters, the purifier, quantised layers (layer L1)."""
