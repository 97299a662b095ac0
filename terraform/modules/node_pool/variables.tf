variable "platform" {
  description = "Platform name (plan.platform.name); stored in server metadata as ai4os_platform."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.platform))
    error_message = "platform must be a DNS label."
  }
}

variable "site" {
  description = "Site name (plan.sites[].name); stored in server metadata as ai4os_site."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.site))
    error_message = "site must be a DNS label."
  }
}

variable "pool" {
  description = "Pool name (plan.sites[].pools[].name); stored in server metadata as ai4os_pool and used to name the server group."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.pool))
    error_message = "pool must be a DNS label."
  }
}

variable "role" {
  description = "Node role of every node in the pool; stored as ai4os_role."
  type        = string

  validation {
    condition     = contains(["server", "ingress", "services", "cpu", "gpu", "tryme", "batch"], var.role)
    error_message = "role must be one of server, ingress, services, cpu, gpu, tryme, batch."
  }
}

variable "nodes" {
  description = <<-EOT
    The pool's nodes keyed by node name (the server name, a DNS label):
    groups (inventory groups, stored comma-joined as ai4os_groups), node_meta
    (Nomad client meta, stored as JSON in ai4os_node_meta), volume_gb (size of
    the data volume; 0 = none) and floating_ip.
  EOT
  type = map(object({
    groups      = list(string)
    node_meta   = optional(map(string), {})
    volume_gb   = optional(number, 0)
    floating_ip = optional(bool, false)
  }))

  validation {
    condition     = alltrue([for name in keys(var.nodes) : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", name))])
    error_message = "Node names must be DNS labels (they become server and Nomad node names)."
  }

  validation {
    condition     = alltrue([for n in values(var.nodes) : n.volume_gb >= 0 && floor(n.volume_gb) == n.volume_gb])
    error_message = "volume_gb must be a whole number of GiB, 0 for no data volume."
  }

  # Nova limits metadata values to 255 characters.
  validation {
    condition     = alltrue([for n in values(var.nodes) : length(join(",", n.groups)) <= 255 && length(jsonencode(n.node_meta)) <= 255])
    error_message = "A node's groups (comma-joined) and node_meta (as JSON) must each fit in 255 characters (Nova's metadata limit)."
  }
}

variable "flavor" {
  description = <<-EOT
    How to choose the flavor. id: an explicit flavor ID (private flavors; wins
    over everything). name: a flavor name. Otherwise vcpus (exact) with ram_mb
    and disk_gb as minimums. accelerator: requirements checked against the
    chosen flavor's extra specs (Accelerator:Type equal, Accelerator:Number
    >= number, Accelerator:Vendor / Accelerator:Model containing vendor / model,
    case-insensitive); a flavor that does not match fails the plan before
    anything is created.
  EOT
  type = object({
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

  validation {
    condition     = var.flavor.id != null || var.flavor.name != null || var.flavor.vcpus != null
    error_message = "flavor needs id, name, or vcpus (with ram_mb/disk_gb as minimums)."
  }

  validation {
    condition     = try(var.flavor.accelerator.number, 1) >= 1
    error_message = "flavor.accelerator.number must be at least 1."
  }
}

variable "image" {
  description = "The boot image: id (explicit), or name and/or properties (for example os_distro/os_version); the most recent match wins."
  type = object({
    id         = optional(string)
    name       = optional(string)
    properties = optional(map(string), {})
  })

  validation {
    condition     = var.image.id != null || var.image.name != null || length(var.image.properties) > 0
    error_message = "image needs id, name or properties."
  }
}

variable "network_id" {
  description = "ID of the tenant network the nodes' ports are on."
  type        = string
}

variable "subnet_id" {
  description = "ID of the subnet the nodes' fixed IPs come from."
  type        = string
}

variable "security_group_ids" {
  description = "Security groups attached to every node's port (the plan's groups for this pool's role)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) > 0
    error_message = "At least one security group is needed; a port without one would get the project's default group."
  }
}

variable "key_pair" {
  description = "Name of the Nova key pair injected for the image's default user."
  type        = string
}

variable "admin_user" {
  description = "Admin user cloud-init creates (passwordless sudo, password login locked)."
  type        = string
  default     = "ubuntu"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.admin_user))
    error_message = "admin_user must be a POSIX user name."
  }
}

variable "ssh_public_keys" {
  description = "Extra public keys authorised for admin_user (besides the key pair)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for k in var.ssh_public_keys : can(regex("^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) ", k))])
    error_message = "ssh_public_keys must be OpenSSH public keys (ssh-ed25519 ..., ssh-rsa ..., ecdsa-sha2-...)."
  }
}

variable "server_group_policy" {
  description = "Nova server-group policy for the pool: anti-affinity (servers), soft-anti-affinity, or null for no server group."
  type        = string
  default     = null

  validation {
    condition     = var.server_group_policy == null || contains(["anti-affinity", "soft-anti-affinity"], coalesce(var.server_group_policy, "anti-affinity"))
    error_message = "server_group_policy must be anti-affinity, soft-anti-affinity or null."
  }
}

variable "floating_ip_pool" {
  description = "External network floating IPs are allocated from (needed when any node has floating_ip = true)."
  type        = string
  default     = null
}

variable "volume_type" {
  description = "Cinder volume type of the data volumes; null: the cloud's default."
  type        = string
  default     = null
}

variable "availability_zone" {
  description = "Availability zone for servers and volumes; null: the cloud's default."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags set on servers, ports and volumes."
  type        = list(string)
  default     = []
}
