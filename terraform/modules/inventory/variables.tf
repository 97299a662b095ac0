variable "site" {
  description = "Site name (plan.sites[].name)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.site))
    error_message = "site must be a DNS label."
  }
}

variable "ssh_user" {
  description = "User Ansible logs in as on every node (and on the bastion for ProxyJump)."
  type        = string

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "ssh_user must be a POSIX user name."
  }
}

variable "bastion" {
  description = "Name of the site's bastion node (it must have a floating IP when any node has none)."
  type        = string
}

variable "hosts" {
  description = "The site's nodes keyed by node name: private_ip, floating_ip (null without one), inventory groups, pool, role and the data volume id (null without one)."
  type = map(object({
    private_ip  = string
    floating_ip = optional(string)
    groups      = list(string)
    pool        = string
    role        = string
    volume_id   = optional(string)
  }))

  validation {
    condition     = alltrue([for h in values(var.hosts) : can(cidrhost("${h.private_ip}/32", 0))])
    error_message = "Every host needs an IPv4 private_ip."
  }
}
