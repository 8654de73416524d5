"""Encoders by scheme string (``st:``, ``open_clip:``, ``timm:``, ``onnx:``) and bundled aliases.

Importing this package registers the built-in schemes, as sentence-transformers' ``models`` package does;
``base`` holds only the interface and the registries, so implementations never import their importer.
"""

from .base import Encoder, EncoderInfo, Modality, register_alias, register_encoder
from .factory import check_spec, create_encoder, default_device, list_encoders, make_encoder, resolve_spec

__all__ = ["Encoder", "EncoderInfo", "Modality", "check_spec", "create_encoder", "default_device", "list_encoders",
           "make_encoder", "register_alias", "register_encoder", "resolve_spec"]
