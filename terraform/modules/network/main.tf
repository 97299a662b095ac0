# The site's tenant network: either created (network + subnet + router to the
# external network) or an existing one, looked up by name; the subnet is always
# the one with var.cidr so every node gets an address from the plan's CIDR.

locals {
  with_external = var.create || var.need_external
}

# Without a name, the site's only network with router:external = true.
data "openstack_networking_network_v2" "external" {
  count    = local.with_external ? 1 : 0
  name     = var.external_network
  external = var.external_network == null ? true : null
}

resource "openstack_networking_network_v2" "this" {
  count          = var.create ? 1 : 0
  name           = var.name
  admin_state_up = true
  tags           = var.tags
}

resource "openstack_networking_subnet_v2" "this" {
  count           = var.create ? 1 : 0
  name            = var.name
  network_id      = openstack_networking_network_v2.this[0].id
  cidr            = var.cidr
  ip_version      = 4
  enable_dhcp     = true
  dns_nameservers = var.dns_nameservers
  tags            = var.tags
}

resource "openstack_networking_router_v2" "this" {
  count               = var.create ? 1 : 0
  name                = var.name
  admin_state_up      = true
  external_network_id = data.openstack_networking_network_v2.external[0].id
  tags                = var.tags
}

resource "openstack_networking_router_interface_v2" "this" {
  count     = var.create ? 1 : 0
  router_id = openstack_networking_router_v2.this[0].id
  subnet_id = openstack_networking_subnet_v2.this[0].id
}

data "openstack_networking_network_v2" "existing" {
  count = var.create ? 0 : 1
  name  = var.existing_network

  lifecycle {
    precondition {
      condition     = var.existing_network != null
      error_message = "create = false needs existing_network: the name of the network to attach the nodes to."
    }
  }
}

data "openstack_networking_subnet_v2" "existing" {
  count      = var.create ? 0 : 1
  network_id = data.openstack_networking_network_v2.existing[0].id
  cidr       = var.cidr
}
