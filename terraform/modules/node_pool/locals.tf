# Pure expressions over the variables (no provider): tests evaluate them with
# real Terraform (tests/terraform/test_module_logic.py).

locals {
  # Server metadata: the contract with `ai4os-kit inventory --from-cloud`.
  metadata = { for name, node in var.nodes : name => {
    ai4os_platform  = var.platform
    ai4os_site      = var.site
    ai4os_pool      = var.pool
    ai4os_role      = var.role
    ai4os_groups    = join(",", node.groups)
    ai4os_node_meta = jsonencode(node.node_meta)
  } }

  with_volume   = { for name, node in var.nodes : name => node if node.volume_gb > 0 }
  with_floating = { for name, node in var.nodes : name => node if node.floating_ip }

  # Flavor lookup: explicit id, else name, else size.
  flavor_by_size = var.flavor.id == null && var.flavor.name == null

  # Accelerator requirements, normalised: "" / 0 mean "anything".
  wanted_accelerator = {
    type   = lower(try(coalesce(var.flavor.accelerator.type, ""), ""))
    number = try(coalesce(var.flavor.accelerator.number, 0), 0)
    vendor = lower(try(coalesce(var.flavor.accelerator.vendor, ""), ""))
    model  = lower(try(coalesce(var.flavor.accelerator.model, ""), ""))
  }

  # Minimal cloud-init: the admin user with sudo and keys, no password login.
  user_data = join("\n", ["#cloud-config", yamlencode({
    users = ["default", {
      name                = var.admin_user
      sudo                = "ALL=(ALL) NOPASSWD:ALL"
      shell               = "/bin/bash"
      lock_passwd         = true
      ssh_authorized_keys = var.ssh_public_keys
    }]
    ssh_pwauth   = false
    disable_root = true
  })])
}
