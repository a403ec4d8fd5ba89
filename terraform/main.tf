data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first two zones are used (slice below), so a zone AWS adds later changes nothing; set var.azs to pin them by name.
  count = length(var.azs) == 0 ? 1 : 0

  state = "available"
}

locals {
  hub_id         = coalesce(var.hub_id, var.name)
  azs            = length(var.azs) > 0 ? var.azs : slice(data.aws_availability_zones.available[0].names, 0, 2)
  bucket         = coalesce(var.bucket, "${var.name}-data-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}")
  log_group_name = "/ec2hub/${var.name}/hub"
  tags           = merge(var.tags, { "ec2hub:deployment" = var.name })

  # The hub module's hub_api_port (JupyterHub's hub port, which user servers call back to); MWAA's
  # workers reach it too (tests/terraform/test_mwaa_plan.py checks that the two agree).
  hub_api_port = 8081

  # What the hub reads (hub/settings.py); the hub module adds EC2HUB_SECURITY_GROUP_IDS (its user and
  # cluster groups), the Dask gateway's ports and the jobs service's port, which its security groups open.
  base_environment = merge(var.hub_environment, {
    EC2HUB_AWS_REGION        = data.aws_region.current.name
    EC2HUB_AMI_ID            = var.user_ami_id
    EC2HUB_SUBNET_IDS        = join(",", module.network.private_subnet_ids)
    EC2HUB_BUCKET            = module.storage.bucket
    EC2HUB_USER_BOUNDARY_ARN = module.iam.user_boundary_arn
    EC2HUB_HUB_ID            = local.hub_id
    EC2HUB_INSTANCE_TYPE     = var.user_instance_type
    # The load balancer's subnets: sign-in throttling counts the client address it forwards.
    EC2HUB_TRUSTED_PROXIES = join(",", var.public_subnet_cidrs)
    }, var.domain_name == null ? {} : {
    # Each user's server and each hub service on a host of its own under the domain (modules/domain).
    EC2HUB_SUBDOMAIN_HOST = "https://${var.domain_name}"
  })
}

module "network" {
  source = "./modules/network"

  name                 = var.name
  azs                  = local.azs
  vpc_cidr             = var.vpc_cidr
  private_subnet_cidrs = var.private_subnet_cidrs
  public_subnet_cidrs  = var.public_subnet_cidrs
  enable_nat_gateway   = var.enable_nat_gateway
  tags                 = local.tags
}

module "storage" {
  source = "./modules/storage"

  bucket                             = local.bucket
  force_destroy                      = var.bucket_force_destroy
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  tags                               = local.tags
}

module "iam" {
  source = "./modules/iam"

  name                   = var.name
  hub_id                 = local.hub_id
  bucket                 = module.storage.bucket
  boundary_name          = var.boundary_name
  log_group_name         = local.log_group_name
  trusted_principal_arns = var.trusted_principal_arns
  tags                   = local.tags

  # What the hub may launch: into its subnets, with its groups, from the user AMI, of its sizes.
  subnet_ids         = module.network.private_subnet_ids
  security_group_ids = concat(module.hub.instance_security_group_ids, [module.hub.cluster_security_group_id])
  image_ids          = [var.user_ami_id]
  instance_types     = concat(var.user_instance_types, [var.user_instance_type])

  secret_parameter_arns = module.hub.secret_parameter_arns
}

module "hub" {
  source = "./modules/hub"

  name                  = var.name
  create_instance       = var.create_hub_instance
  vpc_id                = module.network.vpc_id
  private_subnet_ids    = module.network.private_subnet_ids
  public_subnet_ids     = module.network.public_subnet_ids
  certificate_arn       = var.domain_name == null ? var.certificate_arn : module.domain[0].certificate_arn
  allowed_cidrs         = var.allowed_cidrs
  hub_ami_id            = var.hub_ami_id
  instance_type         = var.hub_instance_type
  instance_profile_name = module.iam.hub_instance_profile_name
  hub_image             = var.hub_image
  hub_environment       = local.base_environment
  gateway_ports         = var.gateway_ports
  jobs_port             = var.jobs_port
  log_group_name        = module.monitoring.log_group_name
  deletion_protection   = var.hub_deletion_protection
  tags                  = local.tags

  secrets = {
    oauth_client_secret  = var.hub_oauth_client_secret
    ldap_search_password = var.hub_ldap_search_password
    proxy_auth_token     = var.hub_proxy_auth_token
    database_url         = var.hub_database_url
  }
  parameter_versions = var.hub_parameter_versions
}

module "domain" {
  source = "./modules/domain"
  count  = var.domain_name != null && var.create_hub_instance ? 1 : 0

  domain_name  = var.domain_name
  zone_id      = var.route53_zone_id
  alb_dns_name = module.hub.alb_dns_name
  alb_zone_id  = module.hub.alb_zone_id
  tags         = local.tags
}

module "monitoring" {
  source = "./modules/monitoring"

  name                    = var.name
  hub_id                  = local.hub_id
  log_group_name          = local.log_group_name
  alb_arn_suffix          = module.hub.alb_arn_suffix
  target_group_arn_suffix = module.hub.target_group_arn_suffix
  alarm_emails            = var.alarm_emails
  tags                    = local.tags
}

module "costs" {
  source = "./modules/costs"

  name                 = var.name
  hub_id               = local.hub_id
  account_id           = data.aws_caller_identity.current.account_id
  cost_allocation_tags = var.cost_allocation_tags
  monthly_budget_usd   = var.monthly_budget_usd
  alarm_emails         = var.alarm_emails
  tags                 = local.tags
}

# Apache Airflow on MWAA, off by default (its fixed cost). Its tasks reach the hub as user servers do:
# the hub API, the jobs service and the Dask gateway's two ports.
module "mwaa" {
  source = "./modules/mwaa"
  count  = var.mwaa_enabled ? 1 : 0

  name       = var.name
  account_id = data.aws_caller_identity.current.account_id
  bucket     = "${var.name}-airflow-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}"
  # Everything in the DAGs bucket is a copy: the DAGs of pipelines/dags, requirements.txt and
  # plugins.zip from Terraform.
  force_destroy = true

  vpc_id                = module.network.vpc_id
  subnet_ids            = slice(module.network.private_subnet_ids, 0, 2)
  hub_security_group_id = module.hub.hub_security_group_id
  hub_ports = {
    hub-api      = local.hub_api_port
    jobs         = var.jobs_port
    gateway-http = var.gateway_ports.http
    gateway-tcp  = var.gateway_ports.tcp
  }

  create_environment        = var.mwaa.create_environment
  airflow_version           = var.mwaa.airflow_version
  environment_class         = var.mwaa.environment_class
  max_workers               = var.mwaa.max_workers
  requirements              = var.mwaa.requirements
  plugins_zip               = var.mwaa.plugins_zip
  webserver_allowed_cidrs   = var.mwaa.webserver_allowed_cidrs
  connections_secret_prefix = var.mwaa.connections_secret_prefix
  tags                      = local.tags
}
