"""An agent that is not ours, talking to `reactlab serve`: a plain `openai` SDK tool loop over the local
Wikipedia. The model calls search / lookup / finish; the tools run in reactlab's `WikiEnv`. Each question
is one conversation (its id sent as `X-Conversation-Id`), so a `serve --record DIR` recording and the
`--labels` file written here (reward = EM per conversation) feed `reactlab data build --from DIR --labels`.

    reactlab serve smollm2 --record rec/ &
    python examples/openai_tool_agent.py --base-url http://127.0.0.1:8000/v1 --split train --n 10 \
        --labels rec-labels.jsonl
    reactlab data build --from rec/ --labels rec-labels.jsonl --option min_reward=0 -o data/recorded
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import OpenAI

from reactlab.envs.wikienv import WikiEnv
from reactlab.tasks import make_task
from reactlab.types import Action
from reactlab.wiki.index import get_index

SYSTEM = ("Answer the question. Use the tools: search a Wikipedia page, look up a keyword in it, and call "
          "finish with a short answer (a few words) once you know it.")


def tool(name: str, description: str, arg: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}}}


TOOLS = [tool("search", "Search an exact Wikipedia page title; returns its first paragraph.", "entity"),
         tool("lookup", "The next sentence with this keyword in the last page searched.", "keyword"),
         tool("finish", "Give the final answer.", "answer")]


def solve(client: OpenAI, model: str, env: WikiEnv, question: str, conversation: str, max_turns: int,
          max_tokens: int) -> str:
    """One question: ask, run each call in the environment, send the results back; the finish answer."""
    messages: list = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    for turn in range(max_turns):
        last = turn == max_turns - 1  # out of turns: the model must answer
        reply = client.chat.completions.create(
            model=model, messages=messages, tools=TOOLS, max_tokens=max_tokens, temperature=0,
            tool_choice={"type": "function", "function": {"name": "finish"}} if last else "auto",
            extra_headers={"X-Conversation-Id": conversation}).choices[0].message
        messages.append(reply.model_dump(exclude_none=True))
        if not reply.tool_calls:
            messages.append({"role": "user", "content": "Call one of the tools."})
            continue
        for call in reply.tool_calls:
            try:
                arg = next(iter(json.loads(call.function.arguments).values()), "")
            except (json.JSONDecodeError, AttributeError):
                arg = call.function.arguments
            observation, done = env.step(Action(call.function.name, str(arg)))
            if done:
                return env.answer or ""
            messages.append({"role": "tool", "tool_call_id": call.id, "content": observation})
    return ""


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="the served model's id (default: the first of /v1/models)")
    p.add_argument("--task", default="hotpotqa")
    p.add_argument("--split", default="eval")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--max-turns", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--labels", type=Path, help="write {conversation_id, reward} lines here (reward: EM)")
    p.add_argument("--run", default="tool-agent", help="prefix of the conversation ids")
    p.add_argument("--workers", type=int, default=1,
                   help="questions in flight at once (the server batches concurrent requests)")
    p.add_argument("--answers", type=Path, help="write {id, answer, em} lines here, in question order")
    args = p.parse_args(argv)

    client = OpenAI(base_url=args.base_url, api_key="unused")
    model = args.model or client.models.list().data[0].id
    task = make_task(args.task)
    examples = task.examples(args.split, limit=args.n)
    with get_index() as index:

        def one(ex) -> tuple[str, float]:
            cid = f"{args.run}-{ex.id}"
            answer = solve(client, model, WikiEnv(index), ex.question, cid, args.max_turns, args.max_tokens)
            return answer, task.score(ex, answer)["em"]

        with ThreadPoolExecutor(max(1, args.workers)) as pool:  # map keeps the questions' order
            results = list(pool.map(one, examples))
    labels, answers, total = [], [], 0.0
    for ex, (answer, em) in zip(examples, results, strict=True):
        total += em
        labels.append({"conversation_id": f"{args.run}-{ex.id}", "reward": em})
        answers.append({"id": ex.id, "answer": answer, "em": em})
        print(f"{em:.0f}  {ex.question[:70]!r} -> {answer!r} (gold {ex.answer!r})")
    for path, records in ((args.answers, answers), (args.labels, labels)):
        if path:
            path.write_text("".join(json.dumps(x) + "\n" for x in records))
    em = total / max(len(examples), 1)
    print(f"EM {em:.3f} on {len(examples)} {args.task}:{args.split} questions")
    return em


if __name__ == "__main__":
    main()
