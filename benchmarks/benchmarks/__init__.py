"""asv benchmark suite for emfast (see benchmarks/asv.conf.json)."""
