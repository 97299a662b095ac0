"""The platform layer: what platform jobs must satisfy (the job contract: Nomad job
parsing, constraint evaluation, Traefik rules) and the OIDC issuer checks."""
