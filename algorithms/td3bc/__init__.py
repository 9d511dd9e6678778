from .td3bc import TD3BC, TD3BCConfig

__all__ = ["TD3BC", "TD3BCConfig"]
