# `terraform test` of the pure inventory module (no provider needed): CI runs
# it (tests/terraform/test_tf_static.py), from the terraform/ directory:
#
#   terraform init -test-directory=tests/inventory && terraform test -test-directory=tests/inventory

variables {
  site     = "s"
  ssh_user = "ubuntu"
  bastion  = "s-ingress-1"
  hosts = {
    s-ingress-1 = { private_ip = "10.0.0.5", floating_ip = "203.0.113.7", groups = ["ingress", "site_s"], pool = "ingress", role = "ingress" }
    s-cpu-1     = { private_ip = "10.0.0.6", groups = ["cpu", "site_s"], pool = "cpu", role = "cpu", volume_id = "vol-1" }
  }
}

run "private_nodes_jump_through_the_bastion" {
  command = apply

  module {
    source = "./modules/inventory"
  }

  assert {
    condition     = output.inventory.hosts["s-cpu-1"].vars.ansible_ssh_common_args == "-o ProxyJump=ubuntu@203.0.113.7"
    error_message = "A node without a floating IP is reached through the bastion's floating IP."
  }

  assert {
    condition     = output.inventory.hosts["s-cpu-1"].ansible_host == "10.0.0.6"
    error_message = "A private node's ansible_host is its fixed IP."
  }

  assert {
    condition     = jsonencode(output.inventory.hosts["s-ingress-1"].vars) == jsonencode({ ai4os_node_public_address = "203.0.113.7", ansible_user = "ubuntu" })
    error_message = "The bastion is reached directly; its public address is the one the roles advertise across sites."
  }

  assert {
    condition     = jsonencode(output.inventory.groups) == jsonencode({ cpu = ["s-cpu-1"], ingress = ["s-ingress-1"], site_s = ["s-cpu-1", "s-ingress-1"] })
    error_message = "Groups list their nodes, sorted."
  }
}

run "bastion_must_be_a_node" {
  command = plan

  module {
    source = "./modules/inventory"
  }

  variables {
    bastion = "s-server-1"
  }

  expect_failures = [output.inventory]
}

run "bastion_needs_a_floating_ip" {
  command = plan

  module {
    source = "./modules/inventory"
  }

  variables {
    hosts = {
      s-ingress-1 = { private_ip = "10.0.0.5", groups = ["ingress"], pool = "ingress", role = "ingress" }
      s-cpu-1     = { private_ip = "10.0.0.6", groups = ["cpu"], pool = "cpu", role = "cpu" }
    }
  }

  expect_failures = [output.inventory]
}

run "addresses_must_be_ipv4" {
  command = plan

  module {
    source = "./modules/inventory"
  }

  variables {
    hosts = {
      s-ingress-1 = { private_ip = "not-an-ip", floating_ip = "203.0.113.7", groups = [], pool = "ingress", role = "ingress" }
    }
  }

  expect_failures = [var.hosts]
}
