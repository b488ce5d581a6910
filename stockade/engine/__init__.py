"""Pure stock logic and the actors that own it. No I/O; see ``stockade.open_engine``."""
