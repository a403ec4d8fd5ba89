"""Per-user origins on AWS: the domain module, applied to moto, makes a certificate for the hub's
domain and its wildcard, validated in the zone, and points both names at the load balancer.

A moto server of its own, without IAM enforcement: under the local cloud's enforcement moto 5.2.5
refuses every Route 53 read (GetHostedZone, ListResourceRecordSets: 403 with no message), and what
this module may do is the operator's, not the hub role's. The load balancer is not applied here (the
root's apply test leaves out the hub instance and what fronts it); its DNS name and zone are given as
an ALB would have them.
"""

from __future__ import annotations

import json
import textwrap

import boto3
import pytest
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer

from tests.e2e.stack import listen_port
from tests.terraform.tooling import TERRAFORM_DIR, Terraform, cli_config

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
DOMAIN = "hub.example.org"
ALB = {"dns_name": "ec2hub-hub-123456789.us-east-1.elb.amazonaws.com", "zone_id": "Z35SXDOTRQ7X7K"}


@pytest.fixture(scope="module")
def aws():
    """A moto server on loopback; DNS-validated certificates are issued a second after the request
    (on AWS: once the validation record resolves)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=listen_port(), verbose=False)
    server.start()
    wait, moto_settings.ACM_VALIDATION_WAIT = moto_settings.ACM_VALIDATION_WAIT, 1
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        moto_settings.ACM_VALIDATION_WAIT = wait
        server.stop()


def client(endpoint: str, service: str):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_the_domain_and_its_wildcard_get_a_certificate_and_point_at_the_load_balancer(aws, tmp_path):
    route53 = client(aws, "route53")
    zone_id = route53.create_hosted_zone(Name="example.org", CallerReference="ec2hub-test")["HostedZone"][
        "Id"
    ].rsplit("/", 1)[-1]
    endpoint = aws
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "main.tf").write_text(
        textwrap.dedent(
            f"""\
            provider "aws" {{
              region                      = "{REGION}"
              access_key                  = "testing"
              secret_key                  = "testing"
              skip_credentials_validation = true
              skip_requesting_account_id  = true
              skip_metadata_api_check     = true
              endpoints {{
                acm     = "{endpoint}"
                route53 = "{endpoint}"
                sts     = "{endpoint}"
              }}
            }}

            module "domain" {{
              source       = "{TERRAFORM_DIR / "modules" / "domain"}"
              domain_name  = "{DOMAIN}"
              zone_id      = "{zone_id}"
              alb_dns_name = "{ALB["dns_name"]}"
              alb_zone_id  = "{ALB["zone_id"]}"
            }}

            output "domain" {{
              value = module.domain
            }}
            """
        )
    )
    tf = Terraform(tmp_path / "root", cli_config(tmp_path), env={"TF_DATA_DIR": str(tmp_path / "data")})
    tf.check("init", "-input=false")
    try:
        tf.check("apply", "-auto-approve", "-input=false", timeout=400)
        outputs = json.loads(tf.check("output", "-json").stdout)["domain"]["value"]
        assert outputs["subdomain_host"] == f"https://{DOMAIN}"

        certificate = client(aws, "acm").describe_certificate(CertificateArn=outputs["certificate_arn"])
        details = certificate["Certificate"]
        assert details["Status"] == "ISSUED"
        assert set(details["SubjectAlternativeNames"]) == {DOMAIN, f"*.{DOMAIN}"}

        records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        aliases = {
            r["Name"].rstrip(".").replace("\\052", "*"): r["AliasTarget"]
            for r in records
            if r["Type"] == "A" and "AliasTarget" in r
        }
        assert set(aliases) == {DOMAIN, f"*.{DOMAIN}"}
        for target in aliases.values():
            assert target["DNSName"].rstrip(".") == ALB["dns_name"]
            assert target["HostedZoneId"] == ALB["zone_id"]
        validation = [r for r in records if r["Type"] == "CNAME"]
        assert len(validation) == 1, "the domain and its wildcard share one validation record"
    finally:
        destroyed = tf.run("destroy", "-auto-approve", "-input=false", timeout=400)
    assert destroyed.returncode == 0, destroyed.stderr[-4000:]
