# Security groups generated from the node plan's port table, and nothing else:
# OpenStack's default rules are deleted; ingress rules are exactly var.groups'
# rules (deduplicated: the same port can be listed by two components), from a
# CIDR or from another of these groups, plus the egress rules of
# var.egress_cidrs.

resource "openstack_networking_secgroup_v2" "this" {
  for_each             = var.groups
  name                 = each.key
  description          = each.value.description
  delete_default_rules = true
  tags                 = var.tags
}

resource "openstack_networking_secgroup_rule_v2" "this" {
  for_each          = local.rules
  security_group_id = openstack_networking_secgroup_v2.this[each.value.group].id
  direction         = each.value.direction
  ethertype         = each.value.ethertype
  protocol          = each.value.protocol
  port_range_min    = each.value.protocol == "icmp" ? null : each.value.port_min
  port_range_max    = each.value.protocol == "icmp" ? null : each.value.port_max
  remote_ip_prefix  = each.value.remote_cidr
  remote_group_id   = each.value.remote_group == null ? null : local.group_ids[each.value.remote_group]
  description       = each.value.description
}

locals {
  group_ids = { for name, group in openstack_networking_secgroup_v2.this : name => group.id }
}
