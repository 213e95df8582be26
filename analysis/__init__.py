"""analysis: observer data → psychometric thresholds → the layer ranking and report."""
