"""Can the agent's own model tell how long its episode will be? A ridge probe on the model's hidden
states of the question (Zheng et al. ask the LLM for its length; S3 trains a small encoder), against
the question-feature ridge (``features``), on a ``budget build`` dataset's episode targets.

The layer (8, 16, 24, last), the pooling (mean over tokens, or the last token) and the ridge's alpha
are chosen by 5-fold cross-validation (3 seeded repeats) on the TRAINING questions only; the chosen
probe is then fitted on all of them and scored once on the test questions: Kendall tau-b with its
95% bootstrap interval (``budget.metrics``), predictions rounded and clipped to the training range as
``FeatureRegressor`` does.

    .venv/bin/python bench/budget_probe.py runs/budget-react [--model smollm2] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reactlab.budget.metrics import bootstrap, kendall_tau_b
from reactlab.hardware import describe_cpu

LAYERS = (8, 16, 24, -1)
ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)


def embed(model_name: str, questions: list[str]) -> dict[str, list[list[float]]]:
    """Per (pooling, layer): one vector per question, from the chat prompt ``Question: ...``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reactlab.models import parse_model

    path = parse_model(model_name).path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out: dict[str, list[list[float]]] = {}
    for q in questions:
        ids = tok.apply_chat_template([{"role": "user", "content": f"Question: {q}"}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            states = model(ids, output_hidden_states=True).hidden_states
        for layer in LAYERS:
            h = states[layer][0]
            out.setdefault(f"mean{layer}", []).append(h.mean(0).tolist())
            out.setdefault(f"last{layer}", []).append(h[-1].tolist())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a `reactlab budget build` output (train.jsonl, test.jsonl)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from reactlab.budget.labels import read_rows
    from reactlab.budget.predictors import FeatureRegressor

    torch.set_num_threads(args.threads)
    train, test = read_rows(args.data / "train.jsonl"), read_rows(args.data / "test.jsonl")
    print(f"CPU: {describe_cpu()}; {args.model}; {len(train)} training, {len(test)} test questions")
    emb_train, emb_test = embed(args.model, [r.question for r in train]), embed(args.model, [r.question for r in test])
    features = FeatureRegressor.fit(train).predict(test)
    for target in ("steps", "bucket"):
        y = np.array([float(getattr(r, target)) for r in train])
        gold = [float(getattr(r, target)) for r in test]
        scores = []
        for key, rows in emb_train.items():
            x = np.array(rows)
            for alpha in ALPHAS:
                pred = np.zeros(len(y))
                for seed in range(3):
                    for fit, held in KFold(5, shuffle=True, random_state=seed).split(x):
                        model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x[fit], y[fit])
                        pred[held] += model.predict(x[held]) / 3
                scores.append((kendall_tau_b(pred.tolist(), y.tolist()), key, alpha))
        cv, key, alpha = max(scores)
        probe = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(np.array(emb_train[key]), y)
        raw = probe.predict(np.array(emb_test[key]))
        pred = np.clip(np.floor(raw + 0.5), y.min(), y.max()).tolist()
        base = [float(getattr(p, target)) for p in features]
        for name, p, note in ((f"probe {key} alpha {alpha:g}", pred, f"CV tau on train {cv:.3f}"),
                              ("features (ridge)", base, "")):
            ci = bootstrap(p, gold)["tau"]
            print(f"{target:6s} {name:28s} test tau {kendall_tau_b(p, gold):.3f} [{ci[0]:.2f}, {ci[1]:.2f}]  {note}")


if __name__ == "__main__":
    main()
