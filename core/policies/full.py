from core.policies.base import MemoryPolicy


class FullCache(MemoryPolicy):
    """Keeps every token: the reference every other policy is compared to."""

    name = "full"
    evicts = False
