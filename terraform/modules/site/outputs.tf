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
