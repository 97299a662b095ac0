# `terraform test` for the modules with a MOCKED openstack provider, for
# operators who have the provider installed. NOT run in CI here: the provider
# cannot be downloaded on the kit's test machines (docs/terraform.md).
#
#   cd terraform
#   terraform init -test-directory=tests/openstack && terraform test -test-directory=tests/openstack
#
# Each run names the module it tests (paths relative to terraform/).

mock_provider "openstack" {
  # One GPU flavor satisfies every pool: plain pools ask for no accelerator.
  mock_data "openstack_compute_flavor_v2" {
    defaults = {
      id   = "flavor-mock"
      name = "g1.a100.2"
      extra_specs = {
        "Accelerator:Type"   = "GPU"
        "Accelerator:Number" = "2"
        "Accelerator:Vendor" = "NVIDIA"
        "Accelerator:Model"  = "A100 80GB PCIe"
      }
    }
  }

  mock_data "openstack_networking_network_v2" {
    defaults = {
      id   = "external-mock"
      name = "public"
    }
  }

  mock_resource "openstack_networking_port_v2" {
    defaults = {
      all_fixed_ips = ["10.10.0.10"]
    }
  }

  mock_resource "openstack_networking_floatingip_v2" {
    defaults = {
      address = "203.0.113.10"
    }
  }
}

variables {
  platform = "demo"
  site     = "ifca"
  network  = { create = true, cidr = "10.10.0.0/24" }
  image    = { properties = { os_distro = "ubuntu", os_version = "22.04" } }
  ssh      = { user = "ubuntu", key_name = "ai4os-operator" }
  bastion  = "ifca-ingress-1"
  secgroups = {
    demo-ifca-ingress = {
      role = "ingress"
      rules = [
        { protocol = "tcp", port_min = 443, port_max = 443, remote_cidr = "0.0.0.0/0", description = "traefik/https" },
        { protocol = "tcp", port_min = 22, port_max = 22, remote_cidr = "192.0.2.0/24", description = "base/ssh-bastion" },
      ]
    }
    demo-ifca-gpu = {
      role = "gpu"
      rules = [
        { protocol = "tcp", port_min = 22, port_max = 22, remote_cidr = "10.10.0.0/24", description = "base/ssh" },
        { protocol = "tcp", port_min = 20000, port_max = 32000, remote_group = "demo-ifca-ingress", description = "nomad/nomad-dynamic" },
      ]
    }
  }
  pools = {
    ingress = {
      role   = "ingress"
      flavor = { name = "m1.medium" }
      nodes  = { ifca-ingress-1 = { groups = ["ingress", "site_ifca", "traefik"], floating_ip = true } }
    }
    gpu = {
      role   = "gpu"
      flavor = { vcpus = 16, ram_mb = 65536, accelerator = { type = "GPU", number = 1, vendor = "NVIDIA", model = "A100" } }
      nodes = {
        ifca-gpu-1 = { groups = ["gpu", "site_ifca", "nvidia"], volume_gb = 500, node_meta = { type = "compute", tags = "gpu" } }
      }
    }
  }
}

run "site_inventory_reaches_private_nodes_through_the_bastion" {
  command = apply

  module {
    source = "./modules/site"
  }

  assert {
    condition     = output.inventory.bastion.address == "203.0.113.10"
    error_message = "The bastion's address must be its floating IP."
  }

  assert {
    condition     = output.inventory.hosts["ifca-gpu-1"].vars.ansible_ssh_common_args == "-o ProxyJump=ubuntu@203.0.113.10"
    error_message = "A node without a floating IP must be reached through the bastion."
  }

  assert {
    condition     = !contains(keys(output.inventory.hosts["ifca-ingress-1"].vars), "ansible_ssh_common_args")
    error_message = "The bastion itself is reached directly."
  }

  assert {
    condition     = jsonencode(output.inventory.groups["site_ifca"]) == jsonencode(["ifca-gpu-1", "ifca-ingress-1"])
    error_message = "Groups must list the site's nodes."
  }

  assert {
    condition     = output.inventory.hosts["ifca-gpu-1"].volume_id != null && output.inventory.hosts["ifca-ingress-1"].volume_id == null
    error_message = "Only nodes with volume_gb > 0 get a data volume."
  }
}

run "site_refuses_an_unknown_bastion" {
  command = plan

  module {
    source = "./modules/site"
  }

  variables {
    bastion = "ifca-server-9"
  }

  expect_failures = [var.bastion]
}

run "node_pool_metadata_volumes_and_server_group" {
  command = plan

  module {
    source = "./modules/node_pool"
  }

  variables {
    pool                = "server"
    role                = "server"
    flavor              = { name = "m1.medium" }
    network_id          = "net-mock"
    subnet_id           = "subnet-mock"
    security_group_ids  = ["sg-mock"]
    key_pair            = "ai4os-operator"
    server_group_policy = "anti-affinity"
    nodes = {
      ifca-server-1 = { groups = ["server", "site_ifca", "consul_servers"] }
      ifca-server-2 = { groups = ["server", "site_ifca", "consul_servers"] }
    }
  }

  assert {
    condition     = openstack_compute_instance_v2.this["ifca-server-1"].name == "ifca-server-1"
    error_message = "The server name is the node name."
  }

  assert {
    condition = jsonencode(openstack_compute_instance_v2.this["ifca-server-1"].metadata) == jsonencode({
      ai4os_platform  = "demo"
      ai4os_site      = "ifca"
      ai4os_pool      = "server"
      ai4os_role      = "server"
      ai4os_groups    = "server,site_ifca,consul_servers"
      ai4os_node_meta = "{}"
    })
    error_message = "Server metadata is the discovery contract."
  }

  assert {
    condition     = length(openstack_blockstorage_volume_v3.data) == 0 && length(openstack_networking_floatingip_v2.this) == 0
    error_message = "Servers get neither data volumes nor floating IPs here."
  }

  assert {
    condition     = jsonencode(openstack_compute_servergroup_v2.this[0].policies) == jsonencode(["anti-affinity"])
    error_message = "Servers are spread by an anti-affinity server group."
  }

  assert {
    condition     = startswith(openstack_compute_instance_v2.this["ifca-server-2"].user_data, "#cloud-config\n")
    error_message = "cloud-init user data must be a #cloud-config document."
  }
}

run "node_pool_refuses_a_flavor_with_too_few_gpus" {
  command = plan

  module {
    source = "./modules/node_pool"
  }

  variables {
    pool               = "gpu"
    role               = "gpu"
    flavor             = { name = "g1.a100.2", accelerator = { type = "GPU", number = 4 } }
    network_id         = "net-mock"
    subnet_id          = "subnet-mock"
    security_group_ids = ["sg-mock"]
    key_pair           = "ai4os-operator"
    nodes              = { ifca-gpu-1 = { groups = ["gpu"] } }
  }

  expect_failures = [data.openstack_compute_flavor_v2.this]
}

run "node_pool_refuses_the_wrong_gpu_model" {
  command = plan

  module {
    source = "./modules/node_pool"
  }

  variables {
    pool               = "gpu"
    role               = "gpu"
    flavor             = { id = "private-flavor", accelerator = { type = "GPU", number = 1, model = "H100" } }
    network_id         = "net-mock"
    subnet_id          = "subnet-mock"
    security_group_ids = ["sg-mock"]
    key_pair           = "ai4os-operator"
    nodes              = { ifca-gpu-1 = { groups = ["gpu"] } }
  }

  expect_failures = [data.openstack_compute_flavor_v2.this]
}

run "secgroups_create_exactly_the_given_rules_plus_egress" {
  command = plan

  module {
    source = "./modules/secgroups"
  }

  variables {
    groups = {
      g = {
        rules = [
          { protocol = "udp", port_min = 8302, port_max = 8302, remote_address = "b-server-1", description = "consul/consul-serf-wan-udp" },
          { protocol = "tcp", port_min = 4647, port_max = 4647, remote_cidr = "10.10.0.0/24", description = "nomad/nomad-rpc" },
          { protocol = "tcp", port_min = 4647, port_max = 4647, remote_cidr = "10.10.0.0/24", description = "nomad/nomad-rpc-clients" },
        ]
      }
    }
    public_addresses = { b-server-1 = "198.51.100.7" }
  }

  assert {
    condition     = openstack_networking_secgroup_rule_v2.this["g|ingress|IPv4|udp|8302|8302|address:b-server-1"].remote_ip_prefix == "198.51.100.7/32"
    error_message = "A rule naming another site's node admits that node's public address alone."
  }

  assert {
    condition     = length(openstack_networking_secgroup_rule_v2.this) == 4
    error_message = "Two distinct ingress rules (one merged duplicate) plus IPv4 and IPv6 egress."
  }

  assert {
    condition     = openstack_networking_secgroup_v2.this["g"].delete_default_rules
    error_message = "OpenStack's default rules must be removed."
  }
}

run "secgroups_refuse_ssh_from_the_world" {
  command = plan

  module {
    source = "./modules/secgroups"
  }

  variables {
    groups = { g = { rules = [{ protocol = "tcp", port_min = 22, port_max = 22, remote_cidr = "0.0.0.0/0" }] } }
  }

  expect_failures = [var.groups]
}

run "network_uses_an_existing_network" {
  command = plan

  module {
    source = "./modules/network"
  }

  variables {
    name             = "demo-cesnet"
    create           = false
    existing_network = "ai4os-net"
    cidr             = "10.20.0.0/24"
  }

  assert {
    condition     = length(openstack_networking_network_v2.this) == 0 && length(openstack_networking_router_v2.this) == 0
    error_message = "An existing network creates no network and no router."
  }
}
