# The configuration root of `terraform test` (terraform/tests/): it creates
# nothing itself; each run block names the module it tests.
terraform {
  required_version = ">= 1.9.0"
}
