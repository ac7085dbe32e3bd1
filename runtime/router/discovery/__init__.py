"""Where the engines are: a static list, the A records of headless Services, or Kubernetes EndpointSlices.

Every source reports the whole current set of engines to a callback each time it changes.
"""
