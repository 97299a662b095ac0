output "nodes" {
  description = "The pool's nodes keyed by name: server id, private_ip (fixed IP on the site subnet), floating_ip (null without one), volume_id of the data volume (null without one; the guest sees it as /dev/disk/by-id/virtio-<first 20 characters>)."
  value = { for name, server in openstack_compute_instance_v2.this : name => {
    id          = server.id
    private_ip  = openstack_networking_port_v2.this[name].all_fixed_ips[0]
    floating_ip = try(openstack_networking_floatingip_associate_v2.this[name].floating_ip, null)
    volume_id   = try(openstack_compute_volume_attach_v2.data[name].volume_id, null)
  } }
}

output "flavor" {
  description = "The flavor the pool runs on: id, name and extra specs (Accelerator:* on GPU flavors)."
  value = {
    id          = data.openstack_compute_flavor_v2.this.id
    name        = data.openstack_compute_flavor_v2.this.name
    extra_specs = data.openstack_compute_flavor_v2.this.extra_specs
  }
}

output "image_id" {
  description = "ID of the boot image."
  value       = var.image.id != null ? var.image.id : data.openstack_images_image_v2.this[0].id
}

output "server_group_id" {
  description = "ID of the pool's server group; null without one."
  value       = try(openstack_compute_servergroup_v2.this[0].id, null)
}

output "floating_ips" {
  description = "The pool's floating IPs keyed by node name (the address allocated, known before it is associated): the sources other sites' security groups admit."
  value       = { for name, fip in openstack_networking_floatingip_v2.this : name => fip.address }
}
