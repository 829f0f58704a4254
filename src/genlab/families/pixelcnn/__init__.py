"""Autoregressive image models: PixelCNN (van den Oord et al. 2016), masked convolutions and an exact
discrete likelihood.

- ``model.py``: the ``pixelcnn`` model.
"""
MODELS = {"pixelcnn": "model"}
