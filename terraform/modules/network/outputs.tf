output "network_id" {
  description = "ID of the site's tenant network (created or existing)."
  value       = var.create ? openstack_networking_network_v2.this[0].id : data.openstack_networking_network_v2.existing[0].id
}

output "network_name" {
  description = "Name of the site's tenant network."
  value       = var.create ? openstack_networking_network_v2.this[0].name : data.openstack_networking_network_v2.existing[0].name
}

output "subnet_id" {
  description = "ID of the subnet with the site's CIDR; node ports take their fixed IP from it. Known only once the router interface exists, so floating IPs can be associated to ports on it."
  value       = var.create ? openstack_networking_subnet_v2.this[0].id : data.openstack_networking_subnet_v2.existing[0].id
  depends_on  = [openstack_networking_router_interface_v2.this]
}

output "cidr" {
  description = "The site's IPv4 CIDR (as given)."
  value       = var.cidr
}

output "router_id" {
  description = "ID of the router this module created; null when an existing network is used."
  value       = var.create ? openstack_networking_router_v2.this[0].id : null
}

output "external_network_name" {
  description = "Name of the external network (router uplink and floating-IP pool); null when neither a router nor floating IPs need one."
  value       = local.with_external ? data.openstack_networking_network_v2.external[0].name : null
}

output "router_address" {
  description = "The external address of the router this module created (the source address of the nodes without a floating IP on other networks); null with an existing network (sites.yml gives it: network.outbound_addresses)."
  value       = var.create ? openstack_networking_router_v2.this[0].external_fixed_ip[0].ip_address : null
}
