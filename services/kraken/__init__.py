"""cryptoviz-kraken: the Kraken WebSocket v2 producer of rawticker, rawtrade and rawalert."""
