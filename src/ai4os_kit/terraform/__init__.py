"""Terraform: the root module rendered from the node plan, the CLI runner, provision/destroy."""
