"""Exact Jacobians of fused pixels with respect to both input images."""
