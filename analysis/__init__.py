"""Tables, statistics and figures from results; reads files, never runs anything."""
