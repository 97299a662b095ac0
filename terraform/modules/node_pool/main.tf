# One pool of identical nodes: flavor and image lookups, a port per node (with
# the pool's security groups), the servers, a data volume per node that wants
# one, floating IPs where the plan says, and a server group.

data "openstack_compute_flavor_v2" "this" {
  flavor_id = var.flavor.id
  name      = var.flavor.id == null ? var.flavor.name : null
  vcpus     = local.flavor_by_size ? var.flavor.vcpus : null
  min_ram   = local.flavor_by_size ? var.flavor.ram_mb : null
  min_disk  = local.flavor_by_size ? var.flavor.disk_gb : null

  lifecycle {
    postcondition {
      condition = (
        (local.wanted_accelerator.type == "" || lower(lookup(self.extra_specs, "Accelerator:Type", "")) == local.wanted_accelerator.type) &&
        try(tonumber(lookup(self.extra_specs, "Accelerator:Number", "0")), 0) >= local.wanted_accelerator.number &&
        strcontains(lower(lookup(self.extra_specs, "Accelerator:Vendor", "")), local.wanted_accelerator.vendor) &&
        strcontains(lower(lookup(self.extra_specs, "Accelerator:Model", "")), local.wanted_accelerator.model)
      )
      error_message = "Flavor ${self.name} (${self.id}) does not offer the pool's accelerator (type '${local.wanted_accelerator.type}', number >= ${local.wanted_accelerator.number}, vendor '${local.wanted_accelerator.vendor}', model '${local.wanted_accelerator.model}'); its extra specs are ${jsonencode(self.extra_specs)}. Pick a GPU flavor by name or id in sites.yml."
    }
  }
}

data "openstack_images_image_v2" "this" {
  count       = var.image.id == null ? 1 : 0
  name        = var.image.name
  properties  = var.image.properties
  most_recent = true
}

resource "openstack_compute_servergroup_v2" "this" {
  count    = var.server_group_policy == null ? 0 : 1
  name     = "${var.platform}-${var.site}-${var.pool}"
  policies = [var.server_group_policy]
}

resource "openstack_networking_port_v2" "this" {
  for_each              = var.nodes
  name                  = each.key
  network_id            = var.network_id
  admin_state_up        = true
  port_security_enabled = true
  security_group_ids    = var.security_group_ids
  tags                  = var.tags

  fixed_ip {
    subnet_id = var.subnet_id
  }
}

resource "openstack_compute_instance_v2" "this" {
  for_each          = var.nodes
  name              = each.key
  flavor_id         = data.openstack_compute_flavor_v2.this.id
  image_id          = var.image.id != null ? var.image.id : data.openstack_images_image_v2.this[0].id
  key_pair          = var.key_pair
  user_data         = local.user_data
  metadata          = local.metadata[each.key]
  availability_zone = var.availability_zone
  tags              = var.tags

  network {
    port = openstack_networking_port_v2.this[each.key].id
  }

  dynamic "scheduler_hints" {
    for_each = var.server_group_policy == null ? [] : [1]
    content {
      group = openstack_compute_servergroup_v2.this[0].id
    }
  }

  lifecycle {
    # A newer image or changed cloud-init must not silently rebuild a node;
    # re-imaging is a deliberate `terraform apply -replace`.
    ignore_changes = [image_id, user_data]
  }
}

resource "openstack_blockstorage_volume_v3" "data" {
  for_each          = local.with_volume
  name              = "${each.key}-data"
  size              = each.value.volume_gb
  volume_type       = var.volume_type
  availability_zone = var.availability_zone
  metadata          = local.metadata[each.key]

  lifecycle {
    # A node's data outlives its server: Terraform never destroys a data volume. `ai4os-kit
    # provision --allow-destroy NODE` and `ai4os-kit destroy` remove it from the state and keep it
    # in the project (docs/terraform.md, "Removing nodes").
    prevent_destroy = true
  }
}

resource "openstack_compute_volume_attach_v2" "data" {
  for_each    = local.with_volume
  instance_id = openstack_compute_instance_v2.this[each.key].id
  volume_id   = openstack_blockstorage_volume_v3.data[each.key].id
}

resource "openstack_networking_floatingip_v2" "this" {
  for_each    = local.with_floating
  pool        = var.floating_ip_pool
  description = "${each.key} (${var.platform}/${var.site})"
  tags        = var.tags

  lifecycle {
    precondition {
      condition     = var.floating_ip_pool != null
      error_message = "Node ${each.key} wants a floating IP but floating_ip_pool is not set."
    }
  }
}

resource "openstack_networking_floatingip_associate_v2" "this" {
  for_each    = local.with_floating
  floating_ip = openstack_networking_floatingip_v2.this[each.key].address
  port_id     = openstack_networking_port_v2.this[each.key].id
}
