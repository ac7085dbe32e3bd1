"""pdstack's CDK side: the deployment schema (infra.config), one construct per part (network, image, cluster, GPU
capacity, HyperPod, observability, workloads), the cdk-nag acknowledgements and the operations commands
(``python -m infra status|wait|smoke``). A regular package, not a namespace one: installed beside a user's code, a
folder of theirs named ``infra`` must shadow it whole (which ``import pdstack`` then reports), never merge with it.
The public surface for a user's own CDK app is the ``pdstack`` package."""
