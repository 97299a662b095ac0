"""ai4os-kit: build and run an AI4OS platform from one reviewed inventory."""
__version__ = "0.1.0"
