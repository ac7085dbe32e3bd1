"""pdstack runtime: what runs inside the image (prefill worker, decode worker, router, preflight).

It never imports ``infra`` or ``aws_cdk``: the container carries this package alone.
"""
