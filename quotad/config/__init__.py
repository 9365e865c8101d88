"""Configuration: the policy file (`policy`), the daemon file (`daemon`), loading both (`load`).

Import from the submodules: the pure core needs only `quotad.config.policy`, which pulls in no IO library.
"""
