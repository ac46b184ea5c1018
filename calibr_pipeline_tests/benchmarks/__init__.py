"""Performance benchmarks (``make bench``); they print figures and are not collected by pytest."""
