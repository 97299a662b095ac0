output "inventory" {
  description = <<-EOT
    The site's part of the Ansible inventory: site, bastion {name, address},
    hosts (name => ansible_host, private_ip, floating_ip, groups, pool, role,
    volume_id, vars {ansible_user, ansible_ssh_common_args with a ProxyJump
    through the bastion for nodes without a floating IP, ai4os_node_public_address
    (the floating IP) for nodes with one}) and groups
    (group => sorted node names). `ai4os-kit provision` writes
    inventories/<name>/hosts.yml from it.
  EOT
  value = {
    site    = var.site
    bastion = { name = var.bastion, address = local.bastion_address }
    hosts   = local.hosts
    groups  = local.groups
  }

  precondition {
    condition     = contains(keys(var.hosts), var.bastion)
    error_message = "The bastion ${var.bastion} is not one of the site's nodes."
  }

  precondition {
    condition     = local.all_public || local.bastion_address != null
    error_message = "Nodes without a floating IP are reached through the bastion ${var.bastion}, which has none; give the bastion's pool floating_ip: true."
  }
}
