"""Where moto differs from AWS in ways the platform depends on, the local cloud makes it behave like AWS."""

import re


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


def name_cloudwatch_actions_as_iam_does() -> None:
    """moto names CloudWatch's actions by its endpoint (`monitoring:PutMetricData`) where IAM names
    them `cloudwatch:PutMetricData`, as policies do (the hub's, for the jobs service's metric)."""
    from moto.iam.access_control import IAMPolicyStatement

    if getattr(IAMPolicyStatement, "_ec2hub_cloudwatch", False):
        return
    original = IAMPolicyStatement.is_action_permitted

    def is_action_permitted(statement, action, *args, **kwargs):
        if action.startswith("monitoring:"):
            action = "cloudwatch:" + action.partition(":")[2]
        return original(statement, action, *args, **kwargs)

    IAMPolicyStatement.is_action_permitted = is_action_permitted
    IAMPolicyStatement._ec2hub_cloudwatch = True


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


def byte_span(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte that S3 serves for one Range header on an object of `size` bytes.

    None for anything but one satisfiable range (several ranges, a malformed or unsatisfiable
    one): those keep moto's own answer.
    """
    unit, _, spec = header.partition("=")
    first, dash, last = spec.partition("-")
    if unit.strip() != "bytes" or not dash or "," in spec:
        return None
    try:
        begin = int(first) if first.strip() else None
        end = int(last) if last.strip() else None
    except ValueError:
        return None
    if begin is None:  # a suffix: the last `end` bytes
        if not end:
            return None
        begin, end = max(size - end, 0), size - 1
    elif end is None or end >= size:
        end = size - 1
    if begin < 0 or begin > end:
        return None
    return begin, end


class _KeyRange:
    """A stored object as GetObject sees it, whose value is only the requested bytes."""

    def __init__(self, key, header: str) -> None:
        self._key = key
        self._header = header
        self.span: tuple[int, int] | None = None

    def __getattr__(self, name):
        return getattr(self._key, name)

    @property
    def value(self) -> bytes:
        self.span = byte_span(self._header, self._key.size)
        if self.span is None:
            return self._key.value
        begin, end = self.span
        # The same lock and buffer (memory, or a temporary file for large objects) as moto's own read.
        with self._key.lock:
            self._key._value_buffer.seek(begin)
            return self._key._value_buffer.read(end - begin + 1)


def serve_ranges_from_the_range() -> None:
    """Answer a ranged GetObject by reading the range, not the whole object.

    moto reads every object whole for a GET and then cuts the range out of it, so a Parquet
    reader asking for one column chunk of a 128 MB file made the local cloud read and copy
    128 MB. S3 reads what was asked. Here GetObject with one byte range reads those bytes from
    the stored object and answers 206 with the headers moto would give; anything else (no
    range, several ranges, an unsatisfiable one, a part number) keeps moto's own answer.
    """
    from moto.s3.responses import S3Response

    original = S3Response.get_object
    if getattr(original, "_ec2hub", False):
        return

    def get_object(response):
        header = response.headers.get("range") or ""
        if not header or "partNumber" in response.querystring:
            return original(response)
        stored = []

        def get_key(*args, **kwargs):
            key, not_modified = S3Response._get_key(response, *args, **kwargs)
            stored.append(_KeyRange(key, header))
            return stored[-1], not_modified

        response._get_key = get_key
        try:
            status, headers, body = original(response)
        finally:
            del response._get_key
        span = stored[0].span if stored else None
        if status != 200 or span is None:
            return status, headers, body
        begin, end = span
        size = stored[0].size
        if begin or end < size - 1:  # S3 returns no checksum for part of an object
            for name in [h for h in headers if h.lower().startswith("x-amz-checksum-")]:
                del headers[name]
        headers["content-range"] = f"bytes {begin}-{end}/{size}"
        headers["content-length"] = str(len(body))
        return 206, headers, body

    get_object._ec2hub = True
    S3Response.get_object = get_object


def _stored_budget(backend, account_id: str, name: str):
    """The budget moto keeps under this account and name; NotFoundException, as Budgets answers, if none."""
    from moto.budgets.exceptions import NotFoundException

    budget = backend.budgets.get(account_id, {}).get(name)
    if budget is None:
        raise NotFoundException(f"Unable to get budget: {name} - the budget doesn't exist.")
    return budget


def _notification_identity(notification: dict) -> tuple:
    """What names a budget's notification in Budgets' calls: its type, comparison, threshold and
    threshold type (PERCENTAGE when not given). The threshold compares as a number: 80 is 80.0."""
    return (
        notification.get("NotificationType"),
        notification.get("ComparisonOperator"),
        float(notification.get("Threshold", 0)),
        notification.get("ThresholdType") or "PERCENTAGE",
    )


def answer_the_subscribers_of_budget_notifications() -> None:
    """Answer DescribeSubscribersForNotification with the subscribers stored with the notification.

    Budgets keeps each notification's subscribers (e-mail addresses, SNS topics) and lists them for a
    notification named by type, comparison, threshold and threshold type; the AWS provider reads them
    for every notification of an aws_budgets_budget. moto stores them (CreateBudget's
    NotificationsWithSubscribers, CreateNotification) but had no call that reads them: it answered 500,
    which the provider retried for minutes before the apply failed. An unknown budget or notification
    is NotFoundException, as on AWS.
    """
    import json

    from moto.budgets.exceptions import NotFoundException
    from moto.budgets.responses import BudgetsResponse

    if hasattr(BudgetsResponse, "describe_subscribers_for_notification"):
        return

    def describe_subscribers_for_notification(response) -> str:
        budget = _stored_budget(
            response.backend, response._get_param("AccountId"), response._get_param("BudgetName")
        )
        wanted = _notification_identity(response._get_param("Notification") or {})
        for notification in budget.notifications:
            if _notification_identity(notification.details) == wanted:
                return json.dumps({"Subscribers": notification.subscribers})
        raise NotFoundException("Unable to get subscribers - the notification doesn't exist.")

    BudgetsResponse.describe_subscribers_for_notification = describe_subscribers_for_notification


_BUDGET_ARN = re.compile(r"arn:[a-z-]+:budgets::(\d{12}):budget/([^/]+)")


def keep_the_tags_of_budgets() -> None:
    """Keep a budget's tags as Budgets does, by its ARN (arn:aws:budgets::<account>:budget/<name>).

    Budgets takes a new budget's tags in CreateBudget (ResourceTags), lists them with
    ListTagsForResource, changes them with TagResource and UntagResource, and deletes them with the
    budget. The AWS provider creates a tagged aws_budgets_budget so and reads its tags after every
    create and refresh; moto dropped ResourceTags and had none of the tag calls (500). Here the tags
    live on moto's budget, so they go when it goes.
    """
    import json

    from moto.budgets.responses import BudgetsResponse
    from moto.core.exceptions import JsonRESTError

    if hasattr(BudgetsResponse, "list_tags_for_resource"):
        return
    original_create = BudgetsResponse.create_budget

    def tagged_budget(response):
        arn = response._get_param("ResourceARN") or ""
        match = _BUDGET_ARN.fullmatch(arn)
        if match is None:
            raise JsonRESTError("InvalidParameterException", f"{arn} is not the ARN of a budget.")
        budget = _stored_budget(response.backend, *match.groups())
        if not hasattr(budget, "resource_tags"):
            budget.resource_tags = {}
        return budget

    def create_budget(response) -> str:
        body = original_create(response)
        budget = _stored_budget(
            response.backend, response._get_param("AccountId"), response._get_param("Budget")["BudgetName"]
        )
        budget.resource_tags = {t["Key"]: t["Value"] for t in response._get_param("ResourceTags") or []}
        return body

    def list_tags_for_resource(response) -> str:
        tags = tagged_budget(response).resource_tags
        return json.dumps({"ResourceTags": [{"Key": k, "Value": v} for k, v in tags.items()]})

    def tag_resource(response) -> str:
        budget = tagged_budget(response)
        budget.resource_tags.update({t["Key"]: t["Value"] for t in response._get_param("ResourceTags") or []})
        return json.dumps({})

    def untag_resource(response) -> str:
        budget = tagged_budget(response)
        for key in response._get_param("ResourceTagKeys") or []:
            budget.resource_tags.pop(key, None)
        return json.dumps({})

    BudgetsResponse.create_budget = create_budget
    BudgetsResponse.list_tags_for_resource = list_tags_for_resource
    BudgetsResponse.tag_resource = tag_resource
    BudgetsResponse.untag_resource = untag_resource


def apply() -> None:
    look_up_tags_by_resource()
    skip_checks_moto_cannot_make()
    name_cloudwatch_actions_as_iam_does()
    accept_modified_user_data()
    authorize_instance_profile_actions_on_the_profile()
    serve_ranges_from_the_range()
    answer_the_subscribers_of_budget_notifications()
    keep_the_tags_of_budgets()
