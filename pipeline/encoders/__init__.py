"""Encoders by scheme string: ``st:``, ``open_clip:``, ``timm:`` and bundled aliases."""

from .base import (
           Encoder,
           EncoderInfo,
           create_encoder,
           list_encoders,
           register_alias,
           register_encoder,
           resolve_spec,
)

__all__ = ["Encoder", "EncoderInfo", "create_encoder", "list_encoders", "register_alias", "register_encoder",
           "resolve_spec"]
