"""An ML2 mechanism driver that binds every port without any agent.

The test-bed runs no Open vSwitch, no DHCP and no L3 agent: nothing really
boots. Nova still needs bound Neutron ports, so this driver accepts every
segment and marks the port ACTIVE at once.
"""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class NoAgentMechanismDriver(api.MechanismDriver):
    """Bind any normal port to the first segment offered."""

    def initialize(self):
        """Nothing to set up."""

    def bind_port(self, context):
        if context.current.get(portbindings.VNIC_TYPE, portbindings.VNIC_NORMAL) != portbindings.VNIC_NORMAL:
            return
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OTHER, {}, status=constants.PORT_STATUS_ACTIVE)
            return
