"""Fine-tuning over TRL + PEFT: one file per trainer (``sft.py``, ``dpo.py``, ``kto.py``, ``grpo.py``,
``rloo.py``; what GRPO and RLOO share in ``online.py``), the policy they train (``policy.py``), TRL
arguments (``args.py``), CPU patches of TRL (``cpu.py``), rows (``rows.py``), time limits and
processes (``limits.py``), ``training.json`` and the model card (``record.py``), reward functions
(``rewards.py``), loss curves (``plots.py``), the ``reactlab train`` commands (``cli.py``).
Nothing is imported here (torch loads on use)."""
