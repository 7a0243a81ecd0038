"""Named search spaces (YAML files shipped here) and their loader. Knows nothing of Ray."""

from search_spaces.load import load_space, parse_space, shipped_spaces
from search_spaces.space import Param, SearchSpace

__all__ = ["Param", "SearchSpace", "load_space", "parse_space", "shipped_spaces"]
