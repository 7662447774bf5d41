"""The only code that opens data files: read records from anything, write shards and manifests."""

from phitools.shards.manifest import Stats, redact_argv, write_manifest
from phitools.shards.read import RecordReader, expand_inputs, read_records
from phitools.shards.spec import ShardSpec, parse_shard, parse_size
from phitools.shards.write import RecordWriter

__all__ = [
    "RecordReader",
    "RecordWriter",
    "ShardSpec",
    "Stats",
    "expand_inputs",
    "parse_shard",
    "parse_size",
    "read_records",
    "redact_argv",
    "write_manifest",
]
