"""Our inference engine: continuous batching over ragged rows with a shared-prefix ("cascade")
attention, behind ``reactlab.llm.hf``.

Why not ``model.generate`` or a padded batch: an agent's prompts are a 1.5-2k-token few-shot prefix
shared by every row, then each episode's own question and steps, which grow by one observation per
call. On a CPU three costs dominate, and this engine removes each:

1. re-encoding the shared prefix: it is encoded once and kept (a frozen ``Slot``); every row that
   starts with it attends to it in place;
2. reading that prefix once per row at every decoding step (20 rows x 2k tokens x 30 layers of
   keys and values): the prefix part of attention is one matmul for all rows' queries together, so
   the prefix is read once per step; each row's own part is attended separately and the two are
   merged exactly with their log-sum-exp (the "cascade" / Hydragen trick);
3. re-encoding an episode's earlier steps at its next call: a finished row's slot (its KV after
   the prefix) is retained, and a new prompt that extends it only encodes the new tokens;

and two more come from how steps are built:

4. batching without rounds: a step runs one forward over a flat sequence that holds the newest
   token of every decoding row plus a chunk of every new row's prompt (chunked prefill), so a row
   that finishes is replaced at once (continuous batching) and a long row never holds others back;
5. few rows left (the end of a run): a step is then bound by reading the weights, not by the tokens
   fed, so a greedy row also feeds a guess of its next tokens (the tokens that followed the last
   earlier occurrence of its last 2-3 tokens in its own context: agents copy names and phrases
   from observations) and keeps those the model confirms (prompt-lookup decoding; outputs are
   unchanged, rejected guesses are dropped from the row's KV).

How attention gets there: the model runs with ``_attn_implementation = "reactlab_cascade"``
(registered with transformers' ``AttentionInterface``); inside an engine step it reads the step's
layout from a thread-local, writes the new keys/values into each row's slot and computes the
cascade; outside a step it is plain SDPA, so the model still works as usual (``generate``, loss).

Rows never see padding and keep their exact positions, so greedy outputs match one-at-a-time
``model.generate`` up to floating-point summation order (tests check token equality on tiny
models). torch and transformers are imported when this package is, so only ``hf.py`` imports it.

Files: ``scheduler.py`` (``Engine``: admission, KV slots, one step), ``types.py`` (the records
they share: ``Row``, ``Slot``, ``Seg``), ``attention.py`` (cascade attention and its registration), ``drafts.py`` (prompt-lookup drafts), ``sampling.py`` (the next
token and its log-probability).
"""

from reactlab.llm.engine.attention import ATTN, cascade_attention, register
from reactlab.llm.engine.drafts import propose
from reactlab.llm.engine.sampling import pick
from reactlab.llm.engine.scheduler import Engine, kv_shape, supported
from reactlab.llm.engine.types import Row, Seg, Slot, common_prefix_len

__all__ = ["ATTN", "Engine", "Row", "Seg", "Slot", "cascade_attention", "common_prefix_len", "kv_shape", "pick",
           "propose", "register", "supported"]
