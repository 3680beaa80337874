"""landcover-ray: satellite imagery to land-cover maps at any scale, on Ray."""

__version__ = "0.1.0"
