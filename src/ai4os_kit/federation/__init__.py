"""Sharing resources between platform installations: `ai4os-kit federation offer | accept | join | revoke`.

Layer of platform/accounting/day2 (tests/unit/test_layers.py). docs/federation.md explains the exchange.
"""
