"""Our inference engine behind ``reactlab.llm.hf``: continuous batching over ragged rows with a
shared-prefix ("cascade") attention, so an agent's long few-shot prefix is encoded and read once,
an episode's earlier steps are never re-encoded, and rows never wait for each other or see padding.

Files: ``scheduler.py`` (``Engine``: admission, KV slots, one step), ``types.py`` (the records
they share: ``Row``, ``Slot``, ``Seg``), ``attention.py`` (cascade attention and its registration),
``drafts.py`` (prompt-lookup drafts), ``sampling.py`` (the next token and its log-probability).
torch and transformers are imported when this package is, so only ``hf.py`` imports it.
"""

from reactlab.llm.engine.attention import ATTN, cascade_attention, register
from reactlab.llm.engine.drafts import propose
from reactlab.llm.engine.sampling import pick
from reactlab.llm.engine.scheduler import Engine, kv_shape, supported
from reactlab.llm.engine.types import Row, Seg, Slot, common_prefix_len

__all__ = ["ATTN", "Engine", "Row", "Seg", "Slot", "cascade_attention", "common_prefix_len", "kv_shape", "pick",
           "propose", "register", "supported"]
