# One site: its network, its security groups (from the plan's port table) and
# its node pools. The caller passes the site's provider configuration.

module "network" {
  source           = "../network"
  name             = local.name
  create           = var.network.create
  existing_network = var.network.existing
  cidr             = var.network.cidr
  external_network = var.network.external
  need_external    = local.needs_floating_ip
  dns_nameservers  = var.network.dns_nameservers
  tags             = local.tags
}

module "secgroups" {
  source           = "../secgroups"
  groups           = { for name, group in var.secgroups : name => { description = group.description, rules = group.rules } }
  public_addresses = var.public_addresses
  egress_cidrs     = var.egress_cidrs
  tags             = local.tags
}

module "node_pool" {
  source   = "../node_pool"
  for_each = var.pools

  platform            = var.platform
  site                = var.site
  pool                = each.key
  role                = each.value.role
  nodes               = each.value.nodes
  flavor              = each.value.flavor
  image               = var.image
  network_id          = module.network.network_id
  subnet_id           = module.network.subnet_id
  security_group_ids  = [for name in local.pool_secgroups[each.key] : module.secgroups.ids[name]]
  key_pair            = var.ssh.key_name
  admin_user          = var.ssh.user
  ssh_public_keys     = var.ssh.public_keys
  server_group_policy = each.value.server_group_policy
  floating_ip_pool    = module.network.external_network_name
  volume_type         = var.volume_type
  availability_zone   = var.availability_zone
  tags                = local.tags
}

module "inventory" {
  source   = "../inventory"
  site     = var.site
  ssh_user = var.ssh.user
  bastion  = var.bastion
  hosts = merge([for pool, spec in var.pools : { for name, node in spec.nodes : name => {
    private_ip  = module.node_pool[pool].nodes[name].private_ip
    floating_ip = module.node_pool[pool].nodes[name].floating_ip
    volume_id   = module.node_pool[pool].nodes[name].volume_id
    groups      = node.groups
    pool        = pool
    role        = spec.role
  } }]...)
}
