"""Pure domain rules: (state, command) -> (new state, events) or a rejection. No I/O, no clock."""
