"""What the kit's tests share: the rule for services a test needs (fail in CI, skip elsewhere
with the reason), the test-bed probes (Docker, the local OpenStack, a real OpenID provider) and
loaders for the kit's Ansible plugins. tests/ is on pytest's import path (pyproject.toml), so a
test imports these as ``from support import ci`` — no test edits sys.path.
"""
