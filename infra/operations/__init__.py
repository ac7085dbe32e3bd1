"""Operations on a deployed environment: ``python -m infra status|wait|smoke``.

Reads the deployment's stacks and the resources behind them with boto3, talks to the EKS API with the caller's AWS
identity, and never imports aws_cdk: these commands must start fast and run where only boto3 is installed.
"""
