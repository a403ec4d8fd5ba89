"""Where moto differs from AWS in ways the platform depends on, the local cloud makes it behave like AWS."""


def skip_checks_moto_cannot_make() -> None:
    """Make moto skip, instead of fail, the IAM checks it has no information for.

    moto authorizes most non-S3 requests against the resource "*" and evaluates identity-policy
    conditions with no request context, so a least-privilege policy (resource ARNs, tag
    conditions) would be refused as a whole. Here a statement's resource scoping applies when
    moto does not know the resource, and an unverifiable condition neither grants through a
    Deny nor blocks an Allow. Actions stay enforced; resource and condition scoping are checked
    by the independent policy evaluation in the tests.
    """
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    if getattr(IAMPolicyStatement, "_ec2hub_relaxed", False):
        return
    original_matches = IAMPolicyStatement._check_element_matches
    original_permitted = IAMPolicyStatement.is_action_permitted

    def _check_element_matches(statement, element, value):
        if element == "Resource" and value == "*":
            return True
        return original_matches(statement, element, value)

    def is_action_permitted(statement, action, resource="*", principal=None, incoming_condition_values=None):
        document = statement._statement
        if incoming_condition_values is None and "Condition" in document:
            if document.get("Effect") == "Deny":
                return PermissionResult.NEUTRAL
            unconditional = {k: v for k, v in document.items() if k != "Condition"}
            return original_permitted(IAMPolicyStatement(unconditional), action, resource, principal, None)
        return original_permitted(statement, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement._check_element_matches = _check_element_matches
    IAMPolicyStatement.is_action_permitted = is_action_permitted
    IAMPolicyStatement._ec2hub_relaxed = True


def accept_modified_user_data() -> None:
    """Let ModifyInstanceAttribute change user-data as AWS does.

    The SDKs base64-encode the UserData blob once and AWS stores it; moto decodes the blob
    and then expects base64 again, refusing every SDK call. Here the decoded bytes are stored.
    """
    import base64

    import moto.ec2.responses.instances as instance_responses
    from moto.core.types import Base64EncodedString

    original = instance_responses.parse_user_data
    if getattr(original, "_ec2hub", False):
        return

    def parse_user_data(value):
        if isinstance(value, bytes):
            return Base64EncodedString.from_encoded_bytes(base64.b64encode(value))
        return original(value)

    parse_user_data._ec2hub = True
    instance_responses.parse_user_data = parse_user_data


def authorize_instance_profile_actions_on_the_profile() -> None:
    """AddRoleToInstanceProfile and RemoveRoleFromInstanceProfile act on the instance profile on
    AWS; moto checks them against the role named in the request instead."""
    from moto.iam.responses import IamResponse

    original = IamResponse._determine_resource
    if getattr(original, "_ec2hub", False):
        return

    def _determine_resource(response):
        if response._get_action() in ("AddRoleToInstanceProfile", "RemoveRoleFromInstanceProfile"):
            return "*"
        return original(response)

    _determine_resource._ec2hub = True
    IamResponse._determine_resource = _determine_resource


def look_up_tags_by_resource() -> None:
    """A resource's tags straight from moto's tag table, not by scanning every tag of the account.

    moto finds one instance's tags by filtering all tags of all resources, so a tag-filtered
    DescribeInstances is quadratic: with 1,000 instances it took 2.5 s, where EC2 answers in a
    fraction of a second. The answer is the same list, found directly.
    """
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    if getattr(TaggedEC2Resource, "_ec2hub_direct_tags", False):
        return

    def get_tags(resource) -> list[dict[str, str]]:
        resource_id = getattr(resource, "id", None)
        if not resource_id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        tags = resource.ec2_backend.tags.get(resource_id, {})
        return [
            {"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
            for key, value in list(tags.items())
        ]

    TaggedEC2Resource.get_tags = get_tags
    TaggedEC2Resource._ec2hub_direct_tags = True


def apply() -> None:
    look_up_tags_by_resource()
    skip_checks_moto_cannot_make()
    accept_modified_user_data()
    authorize_instance_profile_actions_on_the_profile()
