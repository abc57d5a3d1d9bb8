"""Environments an agent acts in: ``wikienv.py`` (the ReAct paper's Wikipedia tool over the local
index), ``none.py`` (no tool: think, then finish). A task picks its environment."""
