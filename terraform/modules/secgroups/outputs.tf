output "ids" {
  description = "Security group IDs keyed by group name."
  value       = { for name, group in openstack_networking_secgroup_v2.this : name => group.id }
}

output "rules" {
  description = "The effective rules (after deduplication), keyed by group|direction|ethertype|protocol|port_min|port_max|source (CIDR, group:<name> or address:<name>); remote_cidr holds the address a remote_address resolved to; for audits."
  value = { for key, rule in local.rules : key => {
    group          = rule.group
    direction      = rule.direction
    protocol       = rule.protocol
    port_min       = rule.port_min
    port_max       = rule.port_max
    remote_cidr    = rule.remote_cidr
    remote_group   = rule.remote_group
    remote_address = rule.remote_address
    description    = rule.description
  } }
}
