provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "ec2hub"
      ManagedBy = "terraform"
    }
  }
}

module "ec2hub" {
  source = "../../"

  name            = "ec2hub"
  user_ami_id     = var.user_ami_id
  certificate_arn = var.certificate_arn
  hub_image       = var.hub_image
  allowed_cidrs   = var.allowed_cidrs
  alarm_emails    = var.alarm_emails

  hub_environment = {
    EC2HUB_AUTH       = "signup"
    EC2HUB_ADMIN_USER = "admin"
  }
}
