"""Pure call model: no I/O, no clock, no database."""
