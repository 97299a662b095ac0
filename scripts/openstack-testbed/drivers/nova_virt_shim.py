"""Placed into nova/virt/ by the ai4os-kit test-bed install (nova loads drivers only from there)."""
from ai4os_testbed_drivers.fake_gpu import FakeGpuDriver  # noqa: F401
