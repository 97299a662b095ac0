# Pure expressions over the variables (no provider): tests evaluate them with
# real Terraform (tests/terraform/test_module_logic.py).

locals {
  bastion_address = try(var.hosts[var.bastion].floating_ip, null)
  proxy_jump      = local.bastion_address == null ? null : "-o ProxyJump=${var.ssh_user}@${local.bastion_address}"

  hosts = { for name, host in var.hosts : name => {
    ansible_host = coalesce(host.floating_ip, host.private_ip)
    private_ip   = host.private_ip
    floating_ip  = host.floating_ip
    groups       = sort(distinct(host.groups))
    pool         = host.pool
    role         = host.role
    volume_id    = host.volume_id
    # Nodes without a public address are reached through the bastion.
    # A node with a floating IP: its public address, which the roles advertise across
    # sites (Consul WAN, the Nomad servers' RPC; docs/federation.md).
    vars = merge(
      { ansible_user = var.ssh_user },
      host.floating_ip == null ? { ansible_ssh_common_args = local.proxy_jump } : { ai4os_node_public_address = host.floating_ip },
    )
  } }

  group_names = sort(distinct(flatten([for host in values(var.hosts) : host.groups])))
  groups      = { for group in local.group_names : group => sort([for name, host in var.hosts : name if contains(host.groups, group)]) }

  all_public = alltrue([for host in values(var.hosts) : host.floating_ip != null])
}
