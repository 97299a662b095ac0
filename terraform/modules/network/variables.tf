variable "name" {
  description = "Name of the network, subnet and router this module creates (usually <platform>-<site>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.name))
    error_message = "name must be a DNS label: lower-case letters, digits and '-', at most 63 characters."
  }
}

variable "create" {
  description = "true: create a network, a subnet on cidr and a router to the external network; false: use the network named by existing_network."
  type        = bool
}

variable "existing_network" {
  description = "Name of an existing tenant network to attach nodes to (only when create = false)."
  type        = string
  default     = null

  validation {
    condition     = var.existing_network == null || try(length(trimspace(var.existing_network)) > 0, false)
    error_message = "existing_network must be a non-empty network name or null."
  }
}

variable "cidr" {
  description = "IPv4 CIDR of the site's subnet. With create = true it is created; with an existing network the subnet with this CIDR is looked up."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && can(regex("^[0-9.]+/[0-9]+$", var.cidr))
    error_message = "cidr must be an IPv4 CIDR such as 10.10.0.0/24."
  }
}

variable "external_network" {
  description = "Name of the external (provider) network the router uplinks to. null: the site's only network with router:external = true is used."
  type        = string
  default     = null
}

variable "need_external" {
  description = "Look the external network up even when an existing network is used (set when some node gets a floating IP)."
  type        = bool
  default     = false
}

variable "dns_nameservers" {
  description = "DNS resolvers handed out by DHCP on a created subnet. Empty: the cloud's default."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.dns_nameservers : can(cidrhost("${ip}/32", 0))])
    error_message = "dns_nameservers must be IPv4 addresses."
  }
}

variable "tags" {
  description = "Tags set on every resource this module creates (for example the platform and site names)."
  type        = list(string)
  default     = []
}
