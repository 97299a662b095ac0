# Pure expressions over the variables (no provider): tests evaluate them with
# real Terraform (tests/terraform/test_module_logic.py).

locals {
  name = "${var.platform}-${var.site}"
  tags = ["ai4os", "ai4os-platform=${var.platform}", "ai4os-site=${var.site}"]

  needs_floating_ip = anytrue(flatten([for p in values(var.pools) : [for n in values(p.nodes) : n.floating_ip]]))

  # The security groups each pool's nodes get: those made for its role.
  pool_secgroups = { for pool, spec in var.pools : pool => sort([for name, group in var.secgroups : name if group.role == spec.role]) }
}
