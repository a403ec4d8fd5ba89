data "aws_region" "current" {}

data "aws_ssm_parameter" "al2023" {
  count = var.create_instance && var.hub_ami_id == null ? 1 : 0

  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

data "aws_subnet" "hub" {
  count = var.create_instance ? 1 : 0

  id = var.private_subnet_ids[0]
}

locals {
  # configurable-http-proxy's public port (the load balancer's target) and the hub's API port
  # (what single-user servers call back to).
  proxy_port   = 8000
  hub_api_port = 8081
  hub_ami_id   = var.hub_ami_id != null ? var.hub_ami_id : try(nonsensitive(data.aws_ssm_parameter.al2023[0].value), null)

  # A Dask scheduler's ports on its instance (hub/gateway/backend.py: EC2Backend.scheduler_port,
  # dashboard_port, scheduler_api_port).
  dask_scheduler_port     = 8786
  dask_dashboard_port     = 8787
  dask_scheduler_api_port = 8788
  gateway_ports           = tomap(var.gateway_ports)

  # What the cluster group's members may reach of each other: every unprivileged port (Dask's own
  # processes cannot listen below 1024) but those only the hub may reach: a user's server, and a
  # scheduler's dashboard (it has no sign-in of its own; the gateway's proxy checks who asks) and
  # gateway API. Computed as the gaps between those ports, sorted as numbers ("%05d").
  hub_only_ports = [
    for p in sort(formatlist("%05d", distinct([var.user_server_port, local.dask_dashboard_port, local.dask_scheduler_api_port]))) :
    tonumber(p) if tonumber(p) >= 1024
  ]
  peer_range_starts = concat([1024], [for p in local.hub_only_ports : p + 1])
  peer_range_ends   = concat([for p in local.hub_only_ports : p - 1], [65535])
  peer_port_ranges = {
    for i, from in local.peer_range_starts :
    "${from}-${local.peer_range_ends[i]}" => { from = from, to = local.peer_range_ends[i] }
    if from <= local.peer_range_ends[i]
  }

  # Every instance the launcher starts carries the user group (EC2HUB_SECURITY_GROUP_IDS); Dask
  # schedulers and workers carry the cluster group too (EC2HUB_CLUSTER_SECURITY_GROUP_IDS), so that
  # user servers never accept each other's traffic, only the hub's.
  instance_security_group_ids = [aws_security_group.users.id]

  # The hub's secrets, each in an SSM SecureString parameter: the hub reads the variable named here
  # from the parameter that EC2HUB_<variable>_PARAMETER names (hub/secrets.py), so only parameter names
  # reach the hub's environment, its user-data and the outputs.
  secret_kinds = {
    oauth_client_secret  = { parameter = "oauth-client-secret", variable = "EC2HUB_OAUTH_CLIENT_SECRET" }
    ldap_search_password = { parameter = "ldap-search-password", variable = "EC2HUB_LDAP_SEARCH_PASSWORD" }
    proxy_auth_token     = { parameter = "proxy-auth-token", variable = "EC2HUB_PROXY_AUTH_TOKEN" }
    database_url         = { parameter = "database-url", variable = "EC2HUB_DATABASE_URL" }
  }
  stored_secrets = { for kind, secret in local.secret_kinds : kind => secret if contains(keys(var.parameter_versions), kind) }

  environment = merge(var.hub_environment, {
    EC2HUB_SECURITY_GROUP_IDS         = join(",", local.instance_security_group_ids)
    EC2HUB_CLUSTER_SECURITY_GROUP_IDS = aws_security_group.cluster.id
    EC2HUB_GATEWAY_PORT               = tostring(local.gateway_ports.http)
    EC2HUB_GATEWAY_TCP_PORT           = tostring(local.gateway_ports.tcp)
    EC2HUB_JOBS_PORT                  = tostring(var.jobs_port)
    }, {
    for kind, secret in local.stored_secrets : "${secret.variable}_PARAMETER" => aws_ssm_parameter.secret[kind].name
  })
}

# --- the hub's secrets ---

# Written write-only (value_wo): the values come from ephemeral variables and reach neither the plan
# nor the state; a new value is written when its version in parameter_versions changes.
resource "aws_ssm_parameter" "secret" {
  for_each = local.stored_secrets

  name             = "/ec2hub/${var.name}/hub/${each.value.parameter}"
  description      = "ec2hub ${var.name}: the hub's ${each.value.variable} (read by the hub's role only)"
  type             = "SecureString"
  key_id           = var.kms_key_arn
  value_wo         = var.secrets[each.key]
  value_wo_version = var.parameter_versions[each.key]

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.secrets[each.key] != null && var.secrets[each.key] != ""
      error_message = "The hub's ${each.key} is listed in the parameter versions but has no value: set TF_VAR_hub_${each.key} at every plan and apply (it is ephemeral, Terraform keeps no copy)."
    }
  }
}

# --- security groups: internet -> ALB:443 -> hub:8000; hub -> users:8888; users -> hub:8081;
# users -> hub:gateway ports; users -> hub:jobs port; hub -> schedulers:8786-8788; cluster group <-> itself ---

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-alb-"
  description = "ec2hub load balancer: HTTPS from the allowed ranges"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "hub" {
  name_prefix = "${var.name}-hub-"
  description = "ec2hub hub instance: the proxy from the load balancer, the hub API from user servers"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-hub" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "users" {
  #checkov:skip=CKV2_AWS_5:Attached at launch by the hub (EC2HUB_SECURITY_GROUP_IDS, EC2HUB_CLUSTER_SECURITY_GROUP_IDS), no Terraform resource.
  name_prefix = "${var.name}-users-"
  description = "ec2hub user instances: the server port, from the hub only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-users" })

  lifecycle {
    create_before_destroy = true
  }
}

# Dask clusters. Servers, schedulers and workers share this group because the launcher has one list of
# groups for every purpose, so a rule cannot tell them apart: within the group, members reach each
# other on every port of `peer_port_ranges` (workers to the scheduler's 8786, scheduler and workers to
# the workers' random ports), across users too. What keeps one user's cluster from another's there is
# Dask's TLS with each cluster's own certificate (comm.require-encryption); user servers, dashboards
# and schedulers' APIs stay reachable from the hub only. A group per purpose needs the launcher to take
# groups per purpose first.
resource "aws_security_group" "cluster" {
  #checkov:skip=CKV2_AWS_5:Attached at launch by the hub (EC2HUB_SECURITY_GROUP_IDS, EC2HUB_CLUSTER_SECURITY_GROUP_IDS), no Terraform resource.
  name_prefix = "${var.name}-cluster-"
  description = "ec2hub Dask clusters: TLS Dask among user instances, scheduler ports from the hub"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-cluster" })

  lifecycle {
    create_before_destroy = true

    precondition {
      condition     = length(setintersection(values(local.gateway_ports), [local.proxy_port, local.hub_api_port])) == 0
      error_message = "gateway_ports must differ from the hub's own ports ${local.proxy_port} (proxy) and ${local.hub_api_port} (hub API)."
    }
    precondition {
      condition     = !contains(concat(values(local.gateway_ports), [local.proxy_port, local.hub_api_port]), var.jobs_port)
      error_message = "jobs_port must differ from the gateway_ports and from the hub's own ports ${local.proxy_port} (proxy) and ${local.hub_api_port} (hub API)."
    }
    precondition {
      condition     = var.user_server_port != local.dask_scheduler_port
      error_message = "user_server_port must not be ${local.dask_scheduler_port}, the port of Dask schedulers, which workers reach."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.allowed_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_hub" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the hub proxy"
  ip_protocol                  = "tcp"
  from_port                    = local.proxy_port
  to_port                      = local.proxy_port
  referenced_security_group_id = aws_security_group.hub.id
}

resource "aws_vpc_security_group_ingress_rule" "hub_from_alb" {
  security_group_id            = aws_security_group.hub.id
  description                  = "The proxy, from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.proxy_port
  to_port                      = local.proxy_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "hub_api_from_users" {
  security_group_id            = aws_security_group.hub.id
  description                  = "The hub API, from user servers (activity, auth)"
  ip_protocol                  = "tcp"
  from_port                    = local.hub_api_port
  to_port                      = local.hub_api_port
  referenced_security_group_id = aws_security_group.users.id
}

resource "aws_vpc_security_group_egress_rule" "hub_https" {
  security_group_id = aws_security_group.hub.id
  description       = "AWS APIs and the image registry, over HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "hub_to_users" {
  security_group_id            = aws_security_group.hub.id
  description                  = "To user servers"
  ip_protocol                  = "tcp"
  from_port                    = var.user_server_port
  to_port                      = var.user_server_port
  referenced_security_group_id = aws_security_group.users.id
}

resource "aws_vpc_security_group_ingress_rule" "users_from_hub" {
  security_group_id            = aws_security_group.users.id
  description                  = "The user server, from the hub only"
  ip_protocol                  = "tcp"
  from_port                    = var.user_server_port
  to_port                      = var.user_server_port
  referenced_security_group_id = aws_security_group.hub.id
}

resource "aws_vpc_security_group_egress_rule" "users_https" {
  security_group_id = aws_security_group.users.id
  description       = "S3 (through the gateway endpoint), SSM, STS and package mirrors, over HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "users_to_hub_api" {
  security_group_id            = aws_security_group.users.id
  description                  = "To the hub API"
  ip_protocol                  = "tcp"
  from_port                    = local.hub_api_port
  to_port                      = local.hub_api_port
  referenced_security_group_id = aws_security_group.hub.id
}

# The gateway's proxies are the user group's, not the cluster group's: schedulers carry both groups,
# and a user server launched before the cluster group existed keeps only the user group across its
# stops and starts, yet reaches its clusters, all through these two ports.
resource "aws_vpc_security_group_ingress_rule" "hub_gateway_from_users" {
  for_each = local.gateway_ports

  security_group_id            = aws_security_group.hub.id
  description                  = "The Dask gateway ${upper(each.key)} proxy, from user servers and schedulers"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.users.id
}

resource "aws_vpc_security_group_egress_rule" "users_to_hub_gateway" {
  for_each = local.gateway_ports

  security_group_id            = aws_security_group.users.id
  description                  = "To the Dask gateway ${upper(each.key)} proxy on the hub"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.hub.id
}

# Job instances carry the user group (the launcher's groups for every purpose), as user servers do:
# both reach the jobs service, servers to submit jobs, job instances to report their runs.
resource "aws_vpc_security_group_ingress_rule" "hub_jobs_from_users" {
  security_group_id            = aws_security_group.hub.id
  description                  = "The jobs service, from user servers and job instances"
  ip_protocol                  = "tcp"
  from_port                    = var.jobs_port
  to_port                      = var.jobs_port
  referenced_security_group_id = aws_security_group.users.id
}

resource "aws_vpc_security_group_egress_rule" "users_to_hub_jobs" {
  security_group_id            = aws_security_group.users.id
  description                  = "To the jobs service on the hub"
  ip_protocol                  = "tcp"
  from_port                    = var.jobs_port
  to_port                      = var.jobs_port
  referenced_security_group_id = aws_security_group.hub.id
}

resource "aws_vpc_security_group_egress_rule" "hub_to_schedulers" {
  security_group_id            = aws_security_group.hub.id
  description                  = "To Dask schedulers: TLS Dask, dashboard, gateway API"
  ip_protocol                  = "tcp"
  from_port                    = local.dask_scheduler_port
  to_port                      = local.dask_scheduler_api_port
  referenced_security_group_id = aws_security_group.cluster.id
}

resource "aws_vpc_security_group_ingress_rule" "schedulers_from_hub" {
  security_group_id            = aws_security_group.cluster.id
  description                  = "Dask schedulers: TLS Dask, dashboard, gateway API, from the hub"
  ip_protocol                  = "tcp"
  from_port                    = local.dask_scheduler_port
  to_port                      = local.dask_scheduler_api_port
  referenced_security_group_id = aws_security_group.hub.id
}

resource "aws_vpc_security_group_ingress_rule" "cluster_from_peers" {
  for_each = local.peer_port_ranges

  security_group_id            = aws_security_group.cluster.id
  description                  = "Dask among the cluster group, ports ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = aws_security_group.cluster.id
}

resource "aws_vpc_security_group_egress_rule" "cluster_to_peers" {
  for_each = local.peer_port_ranges

  security_group_id            = aws_security_group.cluster.id
  description                  = "Dask to the cluster group, ports ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = aws_security_group.cluster.id
}

# --- the hub instance and its database volume ---

resource "aws_ebs_volume" "database" {
  #checkov:skip=CKV2_AWS_9:Backed up by the DLM snapshot policy below (daily, kept snapshot_retention_count days), not by an AWS Backup plan.
  count = var.create_instance ? 1 : 0

  availability_zone = data.aws_subnet.hub[0].availability_zone
  size              = var.database_volume_size
  type              = "gp3"
  encrypted         = true
  kms_key_id        = var.kms_key_arn

  tags = merge(var.tags, { Name = "${var.name}-hub-database", "ec2hub:snapshot" = "daily" })
}

resource "aws_instance" "hub" {
  count = var.create_instance ? 1 : 0

  ami                    = local.hub_ami_id
  instance_type          = var.instance_type
  subnet_id              = var.private_subnet_ids[0]
  vpc_security_group_ids = [aws_security_group.hub.id]
  iam_instance_profile   = var.instance_profile_name
  ebs_optimized          = true
  monitoring             = true

  metadata_options {
    http_tokens                 = "required"
    http_endpoint               = "enabled"
    http_put_response_hop_limit = 2 # the hub runs in a container: one more hop to the metadata service
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 30
    encrypted   = true
    kms_key_id  = var.kms_key_arn
  }

  user_data_replace_on_change = true
  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    database_volume_id = aws_ebs_volume.database[0].id
    environment        = local.environment
    hub_api_port       = local.hub_api_port
    proxy_port         = local.proxy_port
    service_ports      = concat(values(local.gateway_ports), [var.jobs_port])
    image              = var.hub_image
    region             = data.aws_region.current.name
    log_group          = var.log_group_name
  })

  tags = merge(var.tags, { Name = "${var.name}-hub" })

  lifecycle {
    precondition {
      condition     = var.hub_image != null
      error_message = "hub_image is required to create the hub instance."
    }
  }
}

resource "aws_volume_attachment" "database" {
  count = var.create_instance ? 1 : 0

  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.database[0].id
  instance_id = aws_instance.hub[0].id
}

data "aws_iam_policy_document" "dlm_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["dlm.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "dlm" {
  count = var.create_instance ? 1 : 0

  name_prefix        = "${var.name}-dlm-"
  assume_role_policy = data.aws_iam_policy_document.dlm_assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "dlm" {
  count = var.create_instance ? 1 : 0

  role       = aws_iam_role.dlm[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
}

resource "aws_dlm_lifecycle_policy" "database" {
  count = var.create_instance ? 1 : 0

  description        = "ec2hub ${var.name}: daily snapshots of the hub database volume"
  execution_role_arn = aws_iam_role.dlm[0].arn
  state              = "ENABLED"

  policy_details {
    resource_types = ["VOLUME"]
    target_tags    = { "ec2hub:snapshot" = "daily", Name = "${var.name}-hub-database" }

    schedule {
      name      = "daily"
      copy_tags = true

      create_rule {
        interval      = 24
        interval_unit = "HOURS"
        times         = ["03:00"]
      }

      retain_rule {
        count = var.snapshot_retention_count
      }
    }
  }

  tags = var.tags
}

# --- the load balancer ---

resource "aws_lb" "hub" {
  #checkov:skip=CKV_AWS_91:Access logs need a log bucket with an ELB-writable policy; the hub's own log (every request) is in CloudWatch Logs.
  #checkov:skip=CKV2_AWS_28:A WAF web ACL is an account-level choice (and cost); attach one to this load balancer outside the module if you need it.
  #checkov:skip=CKV2_AWS_76:Same as CKV2_AWS_28: no WAF web ACL is created by this module.
  count = var.create_instance ? 1 : 0

  name                       = "${var.name}-hub"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.certificate_arn != null
      error_message = "certificate_arn is required to create the hub's HTTPS load balancer."
    }
  }
}

resource "aws_lb_target_group" "hub" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the hop to the hub stays inside the VPC, on a port only the load balancer's group reaches.
  count = var.create_instance ? 1 : 0

  name_prefix = "ec2hub"
  port        = local.proxy_port
  protocol    = "HTTP"
  vpc_id      = var.vpc_id
  target_type = "instance"

  health_check {
    path                = "/hub/health"
    matcher             = "200"
    interval            = 30
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_target_group_attachment" "hub" {
  count = var.create_instance ? 1 : 0

  target_group_arn = aws_lb_target_group.hub[0].arn
  target_id        = aws_instance.hub[0].id
  port             = local.proxy_port
}

resource "aws_lb_listener" "https" {
  count = var.create_instance ? 1 : 0

  load_balancer_arn = aws_lb.hub[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.hub[0].arn
  }

  tags = var.tags
}
