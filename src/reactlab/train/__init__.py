"""Fine-tuning over TRL + PEFT: one thin file per method (``sft.py``), shared pieces in
``common.py`` (base model + tokenizer, LoRA config, ``training.json``), loss curves in ``plots.py``,
the ``reactlab train`` commands in ``cli.py``. Nothing is imported here (torch loads on use)."""
