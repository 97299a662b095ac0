variable "platform" {
  description = "Platform name (plan.platform.name): prefix of resource names, stored in server metadata."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.platform))
    error_message = "platform must be a DNS label."
  }
}

variable "site" {
  description = "Site name (plan.sites[].name): the Consul/Nomad datacenter and host-name prefix."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.site))
    error_message = "site must be a DNS label."
  }
}

variable "network" {
  description = "The site's network (plan.sites[].network): create a network+subnet+router on cidr, or use the existing network by name (its subnet with cidr); external: the external network for the router and floating IPs (null: the only external one)."
  type = object({
    create          = bool
    existing        = optional(string)
    cidr            = string
    external        = optional(string)
    dns_nameservers = optional(list(string), [])
  })

  validation {
    condition     = var.network.create != (var.network.existing != null)
    error_message = "network: set create = true, or create = false with existing = <network name> (not both)."
  }
}

variable "image" {
  description = "Boot image (plan.sites[].image): id, or name and/or properties."
  type = object({
    id         = optional(string)
    name       = optional(string)
    properties = optional(map(string), {})
  })
}

variable "ssh" {
  description = "SSH access (plan.sites[].ssh): admin user, Nova key pair name and extra public keys. The operator allow-list itself is in the security-group rules."
  type = object({
    user        = string
    key_name    = string
    public_keys = optional(list(string), [])
  })
}

variable "secgroups" {
  description = "Security groups (plan.secgroups[<site>]) keyed by name: the node role they apply to and their ingress rules, each tracing to the plan's port table."
  type = map(object({
    role        = string
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
}

variable "public_addresses" {
  description = "Public addresses of every site of the platform, keyed by name (node name: its floating IP; <site>-router: a created network's router), for the rules whose remote_address names one (see modules/secgroups). The root merges every site's public_addresses output into it, so the sites admit each other's addresses in the same apply."
  type        = map(string)
  default     = {}
}

variable "egress_cidrs" {
  description = "Destinations nodes may connect to (see modules/secgroups)."
  type        = list(string)
  default     = ["0.0.0.0/0", "::/0"]
}

variable "pools" {
  description = "Node pools (plan.sites[].pools) keyed by pool name: role, flavor requirements, server-group policy and nodes (see modules/node_pool)."
  type = map(object({
    role                = string
    server_group_policy = optional(string)
    flavor = object({
      id      = optional(string)
      name    = optional(string)
      vcpus   = optional(number)
      ram_mb  = optional(number)
      disk_gb = optional(number)
      accelerator = optional(object({
        type   = optional(string, "GPU")
        number = optional(number, 1)
        vendor = optional(string)
        model  = optional(string)
      }))
    })
    nodes = map(object({
      groups      = list(string)
      node_meta   = optional(map(string), {})
      volume_gb   = optional(number, 0)
      floating_ip = optional(bool, false)
    }))
  }))

  validation {
    condition     = length(flatten([for p in values(var.pools) : keys(p.nodes)])) == length(distinct(flatten([for p in values(var.pools) : keys(p.nodes)])))
    error_message = "Node names must be unique across the site's pools."
  }
}

variable "bastion" {
  description = "Name of the node private nodes are reached through (plan.sites[].bastion); it needs a floating IP."
  type        = string

  validation {
    condition     = anytrue([for p in values(var.pools) : contains(keys(p.nodes), var.bastion)])
    error_message = "bastion must be the name of one of the site's nodes."
  }
}

variable "volume_type" {
  description = "Cinder volume type for data volumes; null: the cloud's default."
  type        = string
  default     = null
}

variable "availability_zone" {
  description = "Availability zone for servers and volumes; null: the cloud's default."
  type        = string
  default     = null
}
