"""Export a model: merged HF weights -> GGUF (f32/f16/q8_0/q4_0) -> Ollama Modelfile.

``export_model`` (``pipeline.py``) is the whole pipeline (``export_roles``: one per role of a pipeline); the steps are ``merge.py``, ``gguf.py`` and
``ollama.py``. Nothing heavy is imported at import time.
"""

from reactlab.export.pipeline import ExportResult, export_model, export_roles

__all__ = ["ExportResult", "export_model", "export_roles"]
