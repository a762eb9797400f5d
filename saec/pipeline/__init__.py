"""The Saec flow: train -> compress -> retrain -> evaluate, once (static data) or every hour (streaming)."""
