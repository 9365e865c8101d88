"""Configuration: the policy file (`policy`), the daemon file (`daemon`), loading both (`load`).

Import from the submodules: the pure core needs only `quotad.core.policy`, which pulls in no IO library.
"""
