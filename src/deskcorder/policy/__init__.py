"""IT policy: the pydantic model (``model``) and the layered file loader (``load``)."""

from deskcorder.policy.load import LoadedPolicy, load_policy, machine_policy_dir
from deskcorder.policy.model import Policy

__all__ = ["LoadedPolicy", "Policy", "load_policy", "machine_policy_dir"]
