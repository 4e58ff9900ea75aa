"""The benchmark's scenarios, one module each; bench/loadgen.py runs them."""
