"""Style networks: architectures, tile-consistent normalisation, registry and inference."""

from vrstyle.models.cartoon import CartoonNet
from vrstyle.models.engine import StyleEngine
from vrstyle.models.norm import FrameNorm, NormContext, frame_norm
from vrstyle.models.registry import (
    ARCHITECTURES, STYLES, ModelSpec, available_models, create_model, load_model, register_architecture,
    resolve_model,
)
from vrstyle.models.students import StudentNet
from vrstyle.models.transformer import TransformerNet

register_architecture("johnson")(TransformerNet)
register_architecture("cartoon")(CartoonNet)
register_architecture("student")(StudentNet)

__all__ = [
    "ARCHITECTURES", "CartoonNet", "FrameNorm", "ModelSpec", "NormContext", "STYLES", "StudentNet", "StyleEngine",
    "TransformerNet",
    "available_models", "create_model", "frame_norm", "load_model", "register_architecture", "resolve_model",
]
