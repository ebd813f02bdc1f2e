"""Data stage: PMC article sources → parsed figures → filtered images → WebDataset shards."""
