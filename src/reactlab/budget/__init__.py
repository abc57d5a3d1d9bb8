"""What a question will cost an agent before it runs: ReAct steps and a generated-token range.

``labels`` turns runs into label rows (``reactlab budget build``); ``predictors`` holds the
predictors behind one ``predict(questions)`` interface (baselines and the LLM predictor, whose
prompts are in ``prompts`` and training rows in ``rows``; ``train`` fits or fine-tunes them with the
existing trainers); ``metrics`` and ``evaluate`` score them all alike; ``schedule`` is the runner's
use of a predictor (``RunConfig.order_by``). ``cli`` is ``reactlab budget``.
"""
