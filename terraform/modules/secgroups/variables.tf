variable "groups" {
  description = <<-EOT
    Security groups to create, keyed by group name (from the node plan's
    `secgroups[<site>]`). Each has a description and ingress rules, each rule
    tracing to one port of the plan's port table (description names the
    component and port). A rule's source is exactly one of `remote_cidr`,
    `remote_group`, the name of another group of this map (its members, by
    whatever address: Nomad's dynamic ports are opened to the site's ingress
    group only), or `remote_address`, the name of a public address in
    `public_addresses` (a floating IP or router of this or another site, known
    only once provisioned: the sites reach each other through those). Nothing
    else is opened: the groups are created without OpenStack's default rules.
  EOT
  type = map(object({
    description = optional(string, "")
    rules = list(object({
      direction      = optional(string, "ingress")
      ethertype      = optional(string, "IPv4")
      protocol       = string
      port_min       = number
      port_max       = number
      remote_cidr    = optional(string)
      remote_group   = optional(string)
      remote_address = optional(string)
      description    = optional(string, "")
    }))
  }))

  validation {
    condition     = alltrue([for name in keys(var.groups) : can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", name))])
    error_message = "Security group names must be 1-63 characters of letters, digits, '_', '.', '-'."
  }

  validation {
    condition = alltrue(flatten([for g in values(var.groups) : [
      for r in g.rules : contains(["ingress", "egress"], r.direction) && contains(["IPv4", "IPv6"], r.ethertype) && contains(["tcp", "udp", "icmp"], r.protocol)
    ]]))
    error_message = "Each rule needs direction ingress|egress, ethertype IPv4|IPv6 and protocol tcp|udp|icmp."
  }

  validation {
    condition = alltrue(flatten([for g in values(var.groups) : [
      for r in g.rules : r.protocol == "icmp" || (r.port_min >= 1 && r.port_max <= 65535 && r.port_min <= r.port_max)
    ]]))
    error_message = "Each tcp/udp rule needs 1 <= port_min <= port_max <= 65535."
  }

  validation {
    condition = alltrue(flatten([for g in values(var.groups) : [
      for r in g.rules : length([for s in [r.remote_cidr, r.remote_group, r.remote_address] : s if s != null]) == 1
    ]]))
    error_message = "Each rule needs exactly one source: remote_cidr, remote_group or remote_address."
  }

  validation {
    condition = alltrue(flatten([for g in values(var.groups) : [
      for r in g.rules : r.remote_cidr == null || can(cidrhost(r.remote_cidr == null ? "" : r.remote_cidr, 0))
    ]]))
    error_message = "Each rule's remote_cidr must be a CIDR such as 10.10.0.0/24."
  }

  validation {
    condition = alltrue(flatten([for g in values(var.groups) : [
      for r in g.rules : r.remote_group == null || contains(keys(var.groups), r.remote_group == null ? "" : r.remote_group)
    ]]))
    error_message = "Each rule's remote_group must name a security group of this module's groups (e.g. the site's ingress group)."
  }

  validation {
    condition = alltrue(flatten([for g in values(var.groups) : [
      for r in g.rules : r.remote_address == null || contains(keys(var.public_addresses), r.remote_address == null ? "" : r.remote_address)
    ]]))
    error_message = "Each rule's remote_address must name an address of public_addresses (a node with a floating IP, or <site>-router)."
  }

  # Defence in depth for the platform's policy: the only ports open to the
  # whole Internet are the web entry points (80/443/tcp).
  validation {
    condition = alltrue(flatten([for g in values(var.groups) : [
      for r in g.rules : !contains(["0.0.0.0/0", "::/0"], r.remote_cidr == null ? "" : r.remote_cidr) || r.direction == "egress" || (
        r.protocol == "tcp" && r.port_min == r.port_max && contains([80, 443], r.port_min)
      )
    ]]))
    error_message = "Only tcp/80 and tcp/443 may be open to 0.0.0.0/0 or ::/0; restrict the rule's remote_cidr (operator allow-list or site CIDRs)."
  }
}

variable "egress_cidrs" {
  description = "Destinations every node may open connections to (package mirrors, container registries, other sites). One egress rule per CIDR and group; IPv6 CIDRs get an IPv6 rule."
  type        = list(string)
  default     = ["0.0.0.0/0", "::/0"]

  validation {
    condition     = alltrue([for c in var.egress_cidrs : can(cidrhost(c, 0))])
    error_message = "egress_cidrs must be CIDRs such as 0.0.0.0/0."
  }
}

variable "tags" {
  description = "Tags set on every security group this module creates."
  type        = list(string)
  default     = []
}

variable "public_addresses" {
  description = "Public IPv4 addresses known only once provisioned, keyed by the names the plan's rules give in remote_address: every node's floating IP (node name) and each created network's router (<site>-router), of every site of the platform (the root merges the sites' public_addresses outputs). A rule naming one is opened to that address alone (/32)."
  type        = map(string)
  default     = {}
}
