"""The GPU zone check's Lambda handler (inlined into the template as ZipFile code, infra/deploy_check.py: one file,
standard library and boto3 only, as the Lambda Python runtime provides).

Before GPU capacity is created: the GPU subnet's zone must be the configured AZ id, and EC2 must offer each GPU
instance type in that zone (DescribeInstanceTypeOfferings, location type availability-zone-id). Any mismatch fails
the custom resource, and so the deploy, with a message that says what to change. Delete always succeeds.
"""

import json
import urllib.request

import boto3


def zone_problems(ec2, subnet_id, az_id, instance_types):
    """What is wrong with placing these instance types in this subnet, or [] when nothing is."""
    subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    zone = ec2.describe_availability_zones(ZoneNames=[subnet["AvailabilityZone"]])["AvailabilityZones"][0]
    if zone["ZoneId"] != az_id:
        return [
            (
                f"the GPU subnet {subnet_id} is in {zone['ZoneName']} = {zone['ZoneId']} in this account, but "
                f"network.gpu_az_id is {az_id}: set network.gpu_az_index to the place of {az_id} among the region's "
                "zones (aws ec2 describe-availability-zones --query 'AvailabilityZones[].[ZoneName,ZoneId]'), or "
                f"gpu_az_id to {zone['ZoneId']} if that zone offers your GPU type"
            )
        ]
    if not instance_types:
        return []
    offered = ec2.describe_instance_type_offerings(
        LocationType="availability-zone-id",
        Filters=[{"Name": "location", "Values": [az_id]}, {"Name": "instance-type", "Values": instance_types}],
    )["InstanceTypeOfferings"]
    missing = sorted(set(instance_types) - {o["InstanceType"] for o in offered})
    if missing:
        return [
            (
                f"EC2 does not offer {', '.join(missing)} in {az_id} ({zone['ZoneName']}): choose a zone id that does "
                "(aws ec2 describe-instance-type-offerings --location-type availability-zone-id --filters "
                f"Name=instance-type,Values={missing[0]}) for network.gpu_az_id and network.gpu_az_index"
            )
        ]
    return []


def response(event, problems):
    """The custom-resource response CloudFormation reads (its Reason is what the deploy shows)."""
    return {
        "Status": "FAILED" if problems else "SUCCESS",
        "Reason": "; ".join(problems)[:3000] or "the GPU zone holds the GPU types",
        "PhysicalResourceId": "gpu-zone-check",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {},
    }


def outcome(event, ec2):
    try:
        if event["RequestType"] == "Delete":
            return response(event, [])
        props = event["ResourceProperties"]
        return response(event, zone_problems(ec2, props["SubnetId"], props["AzId"], props["InstanceTypes"]))
    except Exception as error:
        return response(event, [f"the GPU zone check could not run: {error}"])


def handler(event, context):
    body = json.dumps(outcome(event, boto3.client("ec2"))).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"content-type": ""})
    urllib.request.urlopen(request, timeout=30).close()
