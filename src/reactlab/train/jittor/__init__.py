"""Jittor as a second training framework for LoRA SFT (``reactlab train sft --framework jittor``).

One concept per file: ``runtime.py`` (importing Jittor with the settings it needs here),
``model.py`` (the Llama architecture: Llama, SmolLM2, Qwen2-style q/k/v biases), ``convert.py``
(HF safetensors <-> Jittor weights), ``lora.py`` (LoRA layers, merge, PEFT-format save),
``optim.py`` (AdamW and TRL's learning-rate schedules), ``train.py`` (the SFT loop).

Nothing here imports Jittor at import time: ``runtime.import_jittor()`` does, inside functions.
"""
