"""The encode pipeline: index -> plan shards -> encode + extract (one task per shard) -> store."""
