"""Pure domain: events, items, recommendation lists and ranking maths. No I/O."""
