"""Offline parallel corpus (English -> German): parsers for the Debian sources, cleaning and splitting.

Stdlib + lxml only; must not import torch, service or model_store.
"""

from training.data.corpus import ORIGINS, SPLITS, Pair, read_tsv, write_tsv

__all__ = ["ORIGINS", "SPLITS", "Pair", "read_tsv", "write_tsv"]
