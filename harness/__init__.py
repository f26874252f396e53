"""Run the Pulumi program offline under mocks: for the tests and for `make render`.

Nothing here needs the Pulumi CLI, a cloud account, a cluster or a network.
"""
