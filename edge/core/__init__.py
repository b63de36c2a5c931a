"""The base every layer may use: user errors, settings (`EDGE_*`), paths, trace
logging, and making device text safe to show. Imports nothing else of edge."""
