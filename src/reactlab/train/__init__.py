"""Fine-tuning over TRL + PEFT: one thin file per method (``sft.py``, ``dpo.py``, ``kto.py``), shared
pieces in ``common.py`` (base model + tokenizer, LoRA config, reference model, ``training.json``),
reward functions for RL in ``rewards.py``, loss curves in ``plots.py``, the ``reactlab train``
commands in ``cli.py``. Nothing is imported here (torch loads on use)."""
