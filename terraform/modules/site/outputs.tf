output "inventory" {
  description = "The site's Ansible inventory part (see modules/inventory): hosts with addresses, groups, per-host vars and the bastion ProxyJump."
  value       = module.inventory.inventory
}

output "network" {
  description = "The site's network: network_id, subnet_id, cidr, router_id (null with an existing network)."
  value = {
    network_id = module.network.network_id
    subnet_id  = module.network.subnet_id
    cidr       = module.network.cidr
    router_id  = module.network.router_id
  }
}

output "secgroup_ids" {
  description = "Security group IDs keyed by name."
  value       = module.secgroups.ids
}

output "flavors" {
  description = "Per pool: the flavor chosen (id, name, extra specs)."
  value       = { for pool, m in module.node_pool : pool => m.flavor }
}

output "public_addresses" {
  description = "The site's public addresses, known once provisioned: node name => floating IP, and <site>-router => the address a created network's router sends the other nodes' traffic from. Only floating IPs and the router are read (no security group), so every site's rules can admit every other site's addresses in one apply without a cycle."
  value = merge(
    merge([for pool, m in module.node_pool : m.floating_ips]...),
    module.network.router_address == null ? {} : { "${var.site}-router" = module.network.router_address },
  )
}
