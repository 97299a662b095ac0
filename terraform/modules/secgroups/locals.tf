# Pure expressions over the variables (no provider): tests evaluate them with
# real Terraform (tests/terraform/test_module_logic.py).

locals {
  # A rule's source in its key: the CIDR, "group:<name>" for a remote group, or
  # "address:<name>" for a public address (its value is known only once that
  # floating IP or router exists, possibly in this same apply; the key never
  # holds it, so the rules can be planned before it is known).
  ingress = flatten([for group, spec in var.groups : [
    for rule in spec.rules : merge(rule, {
      group       = group
      remote_cidr = rule.remote_address != null ? "${var.public_addresses[rule.remote_address]}/32" : rule.remote_cidr
      key = join("|", [group, rule.direction, rule.ethertype, rule.protocol, rule.port_min, rule.port_max,
        rule.remote_address != null ? format("address:%s", rule.remote_address) : (
      rule.remote_cidr != null ? rule.remote_cidr : format("group:%s", coalesce(rule.remote_group, "-")))])
    })
  ]])

  egress = flatten([for group in keys(var.groups) : [
    for cidr in var.egress_cidrs : {
      group          = group
      direction      = "egress"
      ethertype      = strcontains(cidr, ":") ? "IPv6" : "IPv4"
      protocol       = null
      port_min       = null
      port_max       = null
      remote_cidr    = cidr
      remote_group   = null
      remote_address = null
      description    = "egress to ${cidr}"
      key            = join("|", [group, "egress", cidr])
    }
  ]])

  # Rules with the same key collapse into one; their descriptions are joined
  # so every port that needs the rule stays visible in OpenStack.
  grouped = { for rule in concat(local.ingress, local.egress) : rule.key => rule... }
  rules = { for key, same in local.grouped : key => merge(same[0], {
    description = substr(join(", ", distinct([for r in same : r.description if r.description != ""])), 0, 255)
  }) }
}
