# The hub's domain and one host under it per user server and per hub service (JupyterHub's
# subdomain_host): a certificate covering both, DNS-validated in the zone, and alias records that
# send both to the load balancer.

resource "aws_acm_certificate" "hub" {
  #checkov:skip=CKV2_AWS_71:The wildcard is the point: each user's server is served on a host of its own (<user>.<domain>), so that a page of one user's cannot act on the hub or another user's server.
  domain_name               = var.domain_name
  subject_alternative_names = ["*.${var.domain_name}"]
  validation_method         = "DNS"

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

# The domain and its wildcard share one validation record: the second write is allowed to overwrite it.
resource "aws_route53_record" "validation" {
  for_each = {
    for option in aws_acm_certificate.hub.domain_validation_options : option.domain_name => option
  }

  zone_id         = var.zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "hub" {
  certificate_arn         = aws_acm_certificate.hub.arn
  validation_record_fqdns = [for record in aws_route53_record.validation : record.fqdn]
}

resource "aws_route53_record" "hub" {
  for_each = toset([var.domain_name, "*.${var.domain_name}"])

  zone_id = var.zone_id
  name    = each.value
  type    = "A"

  alias {
    name                   = var.alb_dns_name
    zone_id                = var.alb_zone_id
    evaluate_target_health = true
  }
}
