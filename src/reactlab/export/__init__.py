"""Export a model: merged HF weights -> GGUF (f32/f16/q8_0/q4_0) -> Ollama Modelfile.

``export_model`` (``pipeline.py``) is the whole pipeline; the steps are ``merge.py``, ``gguf.py`` and
``ollama.py``. Nothing heavy is imported at import time.
"""

from reactlab.export.pipeline import ExportResult, export_model

__all__ = ["ExportResult", "export_model"]
