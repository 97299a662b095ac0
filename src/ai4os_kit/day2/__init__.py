"""Day-2 operations of a running platform: add and remove nodes, rolling upgrades, backups and
restores, reset, and `ai4os-kit status` (the CLI side; the work is done by the playbooks
upgrade.yml, scale.yml, remove-node.yml, backup.yml, restore.yml and reset.yml)."""
