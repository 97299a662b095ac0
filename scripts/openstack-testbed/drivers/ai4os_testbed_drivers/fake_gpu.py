"""Nova's fake virt driver with simulated NVIDIA GPUs as passthrough PCI devices.

nova.virt.fake.FakeDriverWithPciResources reports a vendor id no PCI alias can
match; this one reports GPU_COUNT type-PCI devices with NVIDIA's vendor id
(10de) and an A100 product id, so flavors with ``pci_passthrough:alias`` are
scheduled by the PciPassthroughFilter exactly as on a GPU hypervisor: servers
go ACTIVE while GPUs are free and fail with "No valid host" after that.
Nova loads virt drivers only from ``nova.virt``, so the test-bed's install
script places a one-line module there that imports this class. The node keeps
one identity across restarts (<state_path>/compute_id).
"""

from oslo_serialization import jsonutils

from nova.virt import fake
from nova.virt import node as virt_node

GPU_VENDOR_ID = "10de"      # NVIDIA
GPU_PRODUCT_ID = "20b5"     # A100 80GB PCIe
GPU_COUNT = 2


class FakeGpuDriver(fake.FakeDriver):
    """A fake hypervisor of moderate size with GPU_COUNT NVIDIA GPUs."""

    vcpus = 128
    memory_mb = 512 * 1024
    local_gb = 8000

    @staticmethod
    def gpu_devices():
        return [
            {
                "address": f"0000:{0x81 + index:02x}:00.0",
                "vendor_id": GPU_VENDOR_ID,
                "product_id": GPU_PRODUCT_ID,
                "dev_type": "type-PCI",
                "status": "available",
                "parent_addr": None,
                "numa_node": 0,
                "label": "label_10de_20b5",
            }
            for index in range(GPU_COUNT)
        ]

    def get_available_resource(self, nodename):
        status = super().get_available_resource(nodename)
        if status:
            # The fake driver's node uuid is random per process; nova-compute then
            # refuses to restart ("No local node identity found"). Use the node
            # identity nova keeps in <state_path>/compute_id, as real drivers do.
            status["uuid"] = virt_node.get_local_node_uuid()
            status["pci_passthrough_devices"] = jsonutils.dumps(self.gpu_devices())
        return status
