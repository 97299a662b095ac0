"""The local test-bed: platform nodes as systemd containers (`ai4os-kit up` / `down`)."""
