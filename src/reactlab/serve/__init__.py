"""A local OpenAI-compatible server in front of any ``reactlab`` LLM (``reactlab serve``): the HTTP
server in ``app.py``, requests read in ``protocol.py``, batching in ``batcher.py``."""

from reactlab.serve.app import BadJSON, OpenAIServer, main_serve, serve
from reactlab.serve.batcher import MicroBatcher
from reactlab.serve.protocol import BadRequest, parse_messages, parse_params, parse_prompts

__all__ = ["BadJSON", "BadRequest", "MicroBatcher", "OpenAIServer", "main_serve", "parse_messages", "parse_params",
           "parse_prompts", "serve"]
