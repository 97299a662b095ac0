"""The model layer: inventory files, catalogue, node plan and the node contract.

Pure data and validation, no network. Every other layer builds on it; it
imports nothing of theirs (tests/unit/test_layers.py checks the import graph).
"""
