"""A local OpenAI-compatible server in front of any ``reactlab`` LLM (``reactlab serve``): the HTTP
server in ``app.py``, requests read in ``protocol.py``, batching in ``batcher.py``, ``--record`` in
``record.py``."""

from reactlab.serve.app import BadJSON, OpenAIServer, main_serve, serve
from reactlab.serve.batcher import MicroBatcher
from reactlab.serve.protocol import (
           BadRequest,
           ToolSpec,
           parse_messages,
           parse_params,
           parse_prompts,
           parse_tools,
)
from reactlab.serve.record import Recorder

__all__ = ["BadJSON", "BadRequest", "MicroBatcher", "OpenAIServer", "Recorder", "ToolSpec", "main_serve",
           "parse_messages", "parse_params", "parse_prompts", "parse_tools", "serve"]
