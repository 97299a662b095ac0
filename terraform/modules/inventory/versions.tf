terraform {
  # Pure module: no provider, only expressions over its inputs.
  required_version = ">= 1.6.0"
}
